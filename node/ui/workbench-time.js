// Times on the compliance workbench: every instant shown twice, in ISO 8601 UTC (what the ledger,
// the exports and the CLI use) and in the browser's own time zone, so a date picker in the local
// format and a table in UTC never disagree silently. A period is a pair of UTC calendar days.

import { el } from "./common.js";

export const DAY_MS = 86400000;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The browser's time zone name (e.g. "Europe/Paris"), "UTC" when it has none. */
export function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** "2026-12-03 15:40:12 UTC". */
export function utcText(ms) {
  return `${new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "")} UTC`;
}

/** "Thu 3 Dec 2026, 16:40:12 CET" in the browser's time zone. */
export function localText(ms) {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false, timeZoneName: "short",
  }).format(new Date(ms));
}

/** "in 58 min", "3 h ago": how far `ms` is from `now`. */
export function relative(ms, now = Date.now()) {
  const d = ms - now;
  const abs = Math.abs(d);
  const text = abs < 60000 ? "less than a minute" : abs < 3600000 ? `${Math.round(abs / 60000)} min`
    : abs < 2 * DAY_MS ? `${Math.round(abs / 3600000)} h` : `${Math.round(abs / DAY_MS)} days`;
  return d >= 0 ? `in ${text}` : `${text} ago`;
}

/** A <time> showing the instant in UTC with the local time under it. */
export function timeCell(ms) {
  if (typeof ms !== "number") return el("span", {}, "");
  return el("time", { datetime: new Date(ms).toISOString(), class: "wb-time" },
    el("span", { class: "wb-utc" }, utcText(ms)), el("span", { class: "wb-local" }, `local: ${localText(ms)}`));
}

/** The end of an access window in words that cannot be misread. */
export function windowText(expiresMs, now = Date.now()) {
  if (typeof expiresMs !== "number") return "no access window recorded";
  const verb = expiresMs > now ? "access window ends" : "access window ended";
  return `${verb} ${localText(expiresMs)} (${utcText(expiresMs)}, ${relative(expiresMs, now)})`;
}

/** The period of two <input type=date> values, read as UTC days (the end day included):
 *  {sinceMs, untilMs} or {error} in words. An empty start is the ledger's beginning, an empty end today. */
export function readPeriod(since, until) {
  if (since && !DAY.test(since)) return { error: `The start date "${since}" is not a date (YYYY-MM-DD).` };
  if (until && !DAY.test(until)) return { error: `The end date "${until}" is not a date (YYYY-MM-DD).` };
  const sinceMs = since ? Date.parse(`${since}T00:00:00Z`) : 0;
  const untilDay = until || new Date().toISOString().slice(0, 10);
  const untilMs = Date.parse(`${untilDay}T00:00:00Z`) + DAY_MS - 1;
  if (since && sinceMs > untilMs) {
    return { error: `The start date (${since}) is after the end date (${untilDay}): no disclosure can fall in that period. `
      + "Choose a start on or before the end; both days are included." };
  }
  return { sinceMs, untilMs };
}

/** The period in words: UTC first, then the same instants in the browser's time zone. */
export function periodText(sinceMs, untilMs) {
  const from = sinceMs === 0 ? "the ledger's beginning" : utcText(sinceMs);
  return [`From ${from} to ${utcText(untilMs)} (UTC days, both included).`,
    ` In your time zone (${localZone()}): ${sinceMs === 0 ? "the beginning" : localText(sinceMs)} to ${localText(untilMs)}.`];
}
