// Canonical msgpack encoding, byte-identical to node/core/encoding.py `canonical()`:
// msgpack with binary types, map keys sorted by code point, the smallest form of every
// integer, strings and byte strings, and no floats. Only encoding is needed in the browser:
// the node answers reads in JSON.

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
