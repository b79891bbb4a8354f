// Canonical msgpack encoding, byte-identical to node/core/encoding.py `canonical()`:
// msgpack with binary types, map keys sorted by code point, the smallest form of every
// integer, strings and byte strings, and no floats. The node answers reads in JSON; the one
// msgpack value the browser reads is a commit certificate (`decode`, strict: what `canonical`
// writes, nothing else, and no trailing bytes).

export class EncodeError extends Error {}

const MAX_DEPTH = 32;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

class Writer {
  constructor() { this.buf = new Uint8Array(256); this.len = 0; }
  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b) { this.ensure(1); this.buf[this.len++] = b; }
  bytes(arr) { this.ensure(arr.length); this.buf.set(arr, this.len); this.len += arr.length; }
  uint(value, size) { // big-endian unsigned of `size` bytes; value is a BigInt
    this.ensure(size);
    for (let i = size - 1; i >= 0; i--) { this.buf[this.len + i] = Number(value & 0xffn); value >>= 8n; }
    this.len += size;
  }
  result() { return this.buf.slice(0, this.len); }
}

function compareCodePoints(a, b) {
  const x = Array.from(a), y = Array.from(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function writeInt(w, value) {
  const v = BigInt(value);
  if (v > U64_MAX || v < I64_MIN) throw new EncodeError("integer outside the 64-bit range msgpack encodes");
  if (v >= 0n) {
    if (v < 128n) w.byte(Number(v));
    else if (v < 256n) { w.byte(0xcc); w.uint(v, 1); }
    else if (v < 65536n) { w.byte(0xcd); w.uint(v, 2); }
    else if (v < 4294967296n) { w.byte(0xce); w.uint(v, 4); }
    else { w.byte(0xcf); w.uint(v, 8); }
  } else {
    if (v >= -32n) w.byte(Number(v & 0xffn));
    else if (v >= -128n) { w.byte(0xd0); w.uint(v & 0xffn, 1); }
    else if (v >= -32768n) { w.byte(0xd1); w.uint(v & 0xffffn, 2); }
    else if (v >= -2147483648n) { w.byte(0xd2); w.uint(v & 0xffffffffn, 4); }
    else { w.byte(0xd3); w.uint(v & 0xffffffffffffffffn, 8); }
  }
}

function writeHeader(w, n, fix, fixMax, codes) {
  // codes: [8-bit, 16-bit, 32-bit] type bytes (null when the type has no 8-bit form)
  if (fix !== null && n <= fixMax) w.byte(fix | n);
  else if (codes[0] !== null && n < 256) { w.byte(codes[0]); w.uint(BigInt(n), 1); }
  else if (n < 65536) { w.byte(codes[1]); w.uint(BigInt(n), 2); }
  else if (n < 4294967296) { w.byte(codes[2]); w.uint(BigInt(n), 4); }
  else throw new EncodeError("value too long for msgpack");
}

const utf8 = new TextEncoder();

function write(w, value, depth) {
  if (depth > MAX_DEPTH) throw new EncodeError("value nested too deeply");
  if (value === null || value === undefined) w.byte(0xc0);
  else if (value === false) w.byte(0xc2);
  else if (value === true) w.byte(0xc3);
  else if (typeof value === "bigint") writeInt(w, value);
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new EncodeError("floats have no canonical encoding; use (safe) integers or BigInt");
    writeInt(w, value);
  } else if (typeof value === "string") {
    const data = utf8.encode(value);
    writeHeader(w, data.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    w.bytes(data);
  } else if (value instanceof Uint8Array) {
    writeHeader(w, value.length, null, 0, [0xc4, 0xc5, 0xc6]);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeHeader(w, value.length, 0x90, 15, [null, 0xdc, 0xdd]);
    for (const item of value) write(w, item, depth + 1);
  } else if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const keys = Object.keys(value).sort(compareCodePoints);
    writeHeader(w, keys.length, 0x80, 15, [null, 0xde, 0xdf]);
    for (const k of keys) { write(w, k, depth + 1); write(w, value[k], depth + 1); }
  } else {
    throw new EncodeError(`cannot encode ${Object.prototype.toString.call(value)}`);
  }
}

/** The canonical msgpack bytes of `value` (Uint8Array for bytes, plain objects for maps). */
export function canonical(value) {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

export class DecodeError extends Error {}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

class Reader {
  constructor(bytes) { this.b = bytes; this.pos = 0; }
  need(n) { if (this.pos + n > this.b.length) throw new DecodeError("msgpack value cut short"); }
  byte() { this.need(1); return this.b[this.pos++]; }
  uint(size) { // big-endian unsigned of `size` bytes, as a Number when safe, else a BigInt
    this.need(size);
    let v = 0n;
    for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(this.b[this.pos++]);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  take(n) { this.need(n); const out = this.b.slice(this.pos, this.pos + n); this.pos += n; return out; }
}

function signed(v, bits) { // two's complement of an unsigned read
  const big = BigInt(v), top = 1n << BigInt(bits);
  const s = big >= top / 2n ? big - top : big;
  return s >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(s) : s;
}

function read(r, depth) {
  if (depth > MAX_DEPTH) throw new DecodeError("value nested too deeply");
  const t = r.byte();
  if (t <= 0x7f) return t;
  if (t >= 0xe0) return t - 0x100;
  if ((t & 0xf0) === 0x90) return readArray(r, t & 0x0f, depth);
  if ((t & 0xf0) === 0x80) return readMap(r, t & 0x0f, depth);
  if ((t & 0xe0) === 0xa0) return utf8Strict.decode(r.take(t & 0x1f));
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(r.uint(1));
    case 0xc5: return r.take(r.uint(2));
    case 0xc6: return r.take(r.uint(4));
    case 0xcc: return r.uint(1);
    case 0xcd: return r.uint(2);
    case 0xce: return r.uint(4);
    case 0xcf: return r.uint(8);
    case 0xd0: return signed(r.uint(1), 8);
    case 0xd1: return signed(r.uint(2), 16);
    case 0xd2: return signed(r.uint(4), 32);
    case 0xd3: return signed(r.uint(8), 64);
    case 0xd9: return utf8Strict.decode(r.take(r.uint(1)));
    case 0xda: return utf8Strict.decode(r.take(r.uint(2)));
    case 0xdb: return utf8Strict.decode(r.take(r.uint(4)));
    case 0xdc: return readArray(r, r.uint(2), depth);
    case 0xdd: return readArray(r, r.uint(4), depth);
    case 0xde: return readMap(r, r.uint(2), depth);
    case 0xdf: return readMap(r, r.uint(4), depth);
    default: throw new DecodeError(`msgpack type 0x${t.toString(16)} is not used by the ledger (floats, extensions)`);
  }
}

function readArray(r, n, depth) {
  if (n > r.b.length - r.pos) throw new DecodeError("msgpack array longer than its bytes");
  const out = [];
  for (let i = 0; i < n; i++) out.push(read(r, depth + 1));
  return out;
}

function readMap(r, n, depth) {
  if (n > r.b.length - r.pos) throw new DecodeError("msgpack map longer than its bytes");
  const out = Object.create(null);
  for (let i = 0; i < n; i++) {
    const k = read(r, depth + 1);
    if (typeof k !== "string") throw new DecodeError("map keys must be strings");
    out[k] = read(r, depth + 1);
  }
  return out;
}

/** The value of msgpack `bytes` (Uint8Array): byte strings as Uint8Array, integers as Numbers
 * (BigInt beyond 2^53), maps as objects; any trailing byte or unknown type throws DecodeError. */
export function decode(bytes) {
  const r = new Reader(bytes);
  const value = read(r, 0);
  if (r.pos !== bytes.length) throw new DecodeError("trailing bytes after the msgpack value");
  return value;
}
