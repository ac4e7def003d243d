'use strict';
// Node peer of stage_norm.normalize_stage_distribution(jsonb): the same rules, exact decimals.
//
// Input is the JSON text. JSON.parse gives binary doubles (0.1 + 0.2 !== 0.3) and, on Node 20,
// no number source text (the reviver's context.source needs Node 21+ or a V8 flag), so a small
// scanner reads the flat object itself: keys are JSON strings (decoded with JSON.parse only when
// they hold an escape), values must be JSON numbers, kept as their text. Each number becomes an
// exact decimal: an integer coefficient c and a scale s (value = c / 10^s, s = fraction digits
// minus exponent, at least 0: the scale of PostgreSQL's numeric); sums are integer sums at the
// larger scale, exact. The integers are doubles while that is exact (at most 15 digits, scale
// <= 15, every result a safe integer, i.e. below 2^53; checked), else the whole object is done
// again with BigInt. As with jsonb, a repeated key keeps its last value. When the text is not
// a flat object of numbers, JSON.parse checks it: malformed JSON throws a SyntaxError (as the
// jsonb cast would), valid JSON of another shape gives null. An exponent beyond +-1000 throws a
// RangeError (numeric, hence jsonb, refuses it).
//
// Stage key: lower case, without white space and the separators - _ . ; one trailing "round"
// removed; then 'preseed' -> pre-seed, 'seed' -> seed, seriesa[0-9]* -> series-a,
// seriesb[0-9]* -> series-b, series[c-z][0-9]*(+|plus)? -> series-c+; anything else unknown.
// Valid: non-empty object, every key known, every weight 0 <= w <= 1, the sum within 1e-6 of 1.
//
// parseStageDistribution(text) -> { canonical stage: Number } or null. The Numbers are the
//   doubles nearest to the exact (merged) decimals, as JSON.parse of the canonical text gives.
// canonicalStageDistributionText(text) -> the canonical JSON text with the exact decimals
//   (numeric's display: scale kept, e.g. 0.10 + 0.20 -> 0.30), or null.

const NUMBER = /(-?)(0|[1-9]\d*)(?:\.(\d+))?(?:[eE]([+-]?\d+))?/y;
const SEPARATORS = /[\s._-]+/g;
const SERIES_A = /^seriesa[0-9]*$/;
const SERIES_B = /^seriesb[0-9]*$/;
const SERIES_C_PLUS = /^series[c-z][0-9]*(\+|plus)?$/;
const STAGES = ['pre-seed', 'seed', 'series-a', 'series-b', 'series-c+'];
const POW10 = [1n];
function pow10(n) {
  while (POW10.length <= n) POW10.push(POW10[POW10.length - 1] * 10n);
  return POW10[n];
}
const POW10_NUM = Array.from({ length: 23 }, (_, i) => 10 ** i);  // exact doubles up to 1e22

// Index into STAGES, or -1 when unknown.
function stageIndex(label) {
  let k = label.toLowerCase().replace(SEPARATORS, '');
  if (k.endsWith('round')) k = k.slice(0, -5);
  if (k === 'preseed') return 0;
  if (k === 'seed') return 1;
  if (SERIES_A.test(k)) return 2;
  if (SERIES_B.test(k)) return 3;
  if (SERIES_C_PLUS.test(k)) return 4;
  return -1;
}

// Not a flat object of numbers: malformed JSON throws, anything else is invalid (null).
function notFlat(text) {
  JSON.parse(text);
  return null;
}

function isWs(c) {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

// One number of the object: value = (neg ? -1 : 1) * digits / 10^scale, digits a decimal string
// (leading zeros possible), scale >= 0.
class Dec {
  constructor(neg, digits, scale) {
    this.neg = neg;
    this.digits = digits;
    this.scale = scale;
  }
}

// Scans the flat object: a Map key -> Dec (a repeated key keeps its last value, as with jsonb),
// or null when the text is valid JSON of another shape; throws when the text is malformed.
function scan(text) {
  const n = text.length;
  let i = 0;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x7b /* { */) return notFlat(text);
  i++;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  const entries = new Map();
  if (text.charCodeAt(i) === 0x7d /* } */) {
    i++;
  } else {
    for (;;) {
      if (text.charCodeAt(i) !== 0x22 /* " */) return notFlat(text);
      const start = i++;
      let escaped = false;
      for (;;) {
        if (i >= n) return notFlat(text);
        const c = text.charCodeAt(i);
        if (c === 0x22) break;
        if (c < 0x20) return notFlat(text);
        if (c === 0x5c /* \ */) { escaped = true; i += 2; } else i++;
      }
      i++;
      const key = escaped ? JSON.parse(text.slice(start, i)) : text.slice(start + 1, i - 1);
      while (i < n && isWs(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== 0x3a /* : */) return notFlat(text);
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m === null) return notFlat(text);
      i = NUMBER.lastIndex;
      const frac = m[3] === undefined ? '' : m[3];
      const exp = m[4] === undefined ? 0 : Number(m[4]);
      if (exp > 1000 || exp < -1000) throw new RangeError(`number exponent out of range: ${m[0]}`);
      const scale = frac.length - exp;
      entries.set(key, scale >= 0 ? new Dec(m[1] === '-', m[2] + frac, scale)
        : new Dec(m[1] === '-', m[2] + frac + '0'.repeat(-scale), 0));
      while (i < n && isWs(text.charCodeAt(i))) i++;
      const d = text.charCodeAt(i);
      if (d === 0x2c /* , */) {
        i++;
        while (i < n && isWs(text.charCodeAt(i))) i++;
        continue;
      }
      if (d === 0x7d /* } */) { i++; break; }
      return notFlat(text);
    }
  }
  while (i < n && isWs(text.charCodeAt(i))) i++;
  if (i !== n) return notFlat(text);
  return entries;
}

// The rules, in exact decimals: coefficient arrays (c[i] / 10^s[i] per STAGES index, c[i]
// undefined when absent), or null when invalid. First with doubles holding integers (exact below
// 2^53: at most 15 digits, scales up to 15, every result checked), else again with BigInt.
const BIG = Symbol('big');
function normalizeNum(entries) {
  const c = new Array(5);
  const s = new Array(5);
  let sc = 0;  // the sum, at scale ss
  let ss = 0;
  for (const [key, w] of entries) {
    if (w.digits.length > 15 || w.scale > 15) return BIG;
    let wc = Number(w.digits);
    const ws = w.scale;
    if (w.neg && wc !== 0) return null;  // w < 0 (-0 is 0)
    if (wc > POW10_NUM[ws]) return null;  // w > 1
    const idx = stageIndex(key);
    if (idx < 0) return null;
    if (c[idx] === undefined) {
      c[idx] = wc; s[idx] = ws;
    } else {
      const t = Math.max(s[idx], ws);
      const m = c[idx] * POW10_NUM[t - s[idx]] + wc * POW10_NUM[t - ws];
      if (!Number.isSafeInteger(m)) return BIG;
      c[idx] = m; s[idx] = t;
    }
    const t = Math.max(ss, ws);
    sc = sc * POW10_NUM[t - ss] + wc * POW10_NUM[t - ws];
    ss = t;
    if (!Number.isSafeInteger(sc)) return BIG;
  }
  // |sum - 1| <= 1e-6: at scale ss the difference is an exact integer d; d / 10^ss <= 10^-6 is
  // d <= 10^(ss - 6) when ss >= 6, and d = 0 when ss < 6 (a non-zero d is then >= 10^(6-ss)).
  const diff = Math.abs(sc - POW10_NUM[ss]);
  if (ss >= 6 ? diff > POW10_NUM[ss - 6] : diff !== 0) return null;
  return [c, s];
}

function normalizeBig(entries) {
  const c = new Array(5);
  const s = new Array(5);
  let sc = 0n;
  let ss = 0;
  for (const [key, w] of entries) {
    const wc = BigInt(w.digits);
    const ws = w.scale;
    if (w.neg && wc !== 0n) return null;
    if (wc > pow10(ws)) return null;
    const idx = stageIndex(key);
    if (idx < 0) return null;
    if (c[idx] === undefined) {
      c[idx] = wc; s[idx] = ws;
    } else {
      const t = Math.max(s[idx], ws);
      c[idx] = c[idx] * pow10(t - s[idx]) + wc * pow10(t - ws);
      s[idx] = t;
    }
    const t = Math.max(ss, ws);
    sc = sc * pow10(t - ss) + wc * pow10(t - ws);
    ss = t;
  }
  const t = Math.max(ss, 6);
  let diff = sc * pow10(t - ss) - pow10(t);
  if (diff < 0n) diff = -diff;
  if (diff > pow10(t - 6)) return null;
  return [c, s];
}

function normalize(text) {
  if (typeof text !== 'string') throw new TypeError('parseStageDistribution expects the JSON text');
  const entries = scan(text);
  if (entries === null || entries.size === 0) return null;
  const r = normalizeNum(entries);
  return r === BIG ? normalizeBig(entries) : r;
}

// numeric's display of c / 10^s: s fraction digits.
function decimalText(c, s) {
  let digits = c.toString();
  if (s > 0) {
    digits = digits.padStart(s + 1, '0');
    digits = digits.slice(0, digits.length - s) + '.' + digits.slice(digits.length - s);
  }
  return digits;
}

function parseStageDistribution(text) {
  const r = normalize(text);
  if (r === null) return null;
  const [c, s] = r;
  const out = {};
  for (let i = 0; i < 5; i++) {
    if (c[i] === undefined) continue;
    // A safe integer over an exact power of ten: one correctly rounded division, the nearest double.
    out[STAGES[i]] = typeof c[i] === 'number' ? c[i] / POW10_NUM[s[i]] : Number(decimalText(c[i], s[i]));
  }
  return out;
}

function canonicalStageDistributionText(text) {
  const r = normalize(text);
  if (r === null) return null;
  const [c, s] = r;
  const parts = [];
  for (let i = 0; i < 5; i++) {
    if (c[i] !== undefined) parts.push(`${JSON.stringify(STAGES[i])}: ${decimalText(c[i], s[i])}`);
  }
  return `{${parts.join(', ')}}`;
}

module.exports = { parseStageDistribution, canonicalStageDistributionText, stageIndex, normalizeBig, scan };
