// The portal's session: signed reads repeated every few seconds while the page is visible (one
// at a time, backing off on errors), and sign-out after a spell without activity.
//
// Defaults: poll every POLL_MS, sign out after IDLE_MS without a key press, click, touch or
// scroll. A page (or a test) may shorten both with query parameters: `patient.html?idle=5&poll=1`
// (seconds; bounded to IDLE_RANGE_S and POLL_RANGE_S).

export const IDLE_MS = 10 * 60 * 1000;
export const POLL_MS = 5000;
export const MAX_BACKOFF_MS = 60000;
const IDLE_RANGE_S = [2, 4 * 3600];
const POLL_RANGE_S = [1, 60];

function param(name, [lo, hi], fallbackMs) {
  const raw = new URLSearchParams(location.search).get(name);
  const s = Number(raw);
  if (raw === null || !Number.isFinite(s)) return fallbackMs;
  return Math.round(Math.min(hi, Math.max(lo, s)) * 1000);
}

/** The idle timeout and poll interval of this page load (ms). */
export function sessionSettings() {
  return { idleMs: param("idle", IDLE_RANGE_S, IDLE_MS), pollMs: param("poll", POLL_RANGE_S, POLL_MS) };
}

const ACTIVITY = ["pointerdown", "keydown", "wheel", "touchstart", "scroll", "input"];

/** Call `onIdle` after `idleMs` without activity, `onWarn(secondsLeft)` in the last stretch
 *  (a minute, or a third of a short timeout) and `onActive` when activity resumes. */
export function idleTimer({ idleMs, onIdle, onWarn, onActive }) {
  const warnMs = Math.min(60000, Math.floor(idleMs / 3));
  let last = Date.now();
  let warned = false;
  let stopped = false;
  const touch = () => {
    last = Date.now();
    if (warned) { warned = false; onActive(); }
  };
  for (const ev of ACTIVITY) document.addEventListener(ev, touch, { capture: true, passive: true });
  const tick = setInterval(() => {
    if (stopped) return;
    const left = idleMs - (Date.now() - last);
    if (left <= 0) { stop(); onIdle(); return; }
    if (left <= warnMs) { warned = true; onWarn(Math.ceil(left / 1000)); }
  }, 500);
  function stop() {
    stopped = true;
    clearInterval(tick);
    for (const ev of ACTIVITY) document.removeEventListener(ev, touch, { capture: true });
  }
  return { stop, touch };
}

/** Run `fn` now and then `everyMs` after each run ends, never two at once; pause while the page is
 *  hidden; after a failure wait twice as long (up to MAX_BACKOFF_MS). `onError(exc)` hears it. */
export function poller(fn, { everyMs, onError }) {
  let timer = null;
  let stopped = false;
  let delay = everyMs;
  let running = false;
  async function run() {
    timer = null;
    if (stopped || running) return;
    if (document.hidden) return; // resumed by visibilitychange
    running = true;
    try {
      await fn();
      delay = everyMs;
    } catch (exc) {
      delay = Math.min(MAX_BACKOFF_MS, delay * 2);
      if (onError) onError(exc);
    } finally {
      running = false;
    }
    if (!stopped) timer = setTimeout(run, delay);
  }
  const visible = () => { if (!document.hidden && !timer && !running && !stopped) run(); };
  document.addEventListener("visibilitychange", visible);
  timer = setTimeout(run, everyMs);
  return {
    stop() { stopped = true; if (timer) clearTimeout(timer); document.removeEventListener("visibilitychange", visible); },
    now() { if (timer) clearTimeout(timer); timer = null; return run(); },
  };
}
