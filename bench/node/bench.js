'use strict';
// node bench/node/bench.js [calls]: per-call latency of parseStageDistribution on the 5-key messy
// distribution of bench/distributions.sql. Self-checks first; then a warm-up (JIT); then each of
// `calls` (default 200,000) calls is timed on its own with process.hrtime.bigint(); p50, p99 and
// p99.9 (nearest rank) in microseconds. The timer's own cost (two hrtime reads, about 0.05 us
// here) is inside every figure.
const assert = require('node:assert/strict');
const { parseStageDistribution, canonicalStageDistributionText } = require('./parse_stage_distribution');

const MESSY = '{"Series A ": 0.2, "pre_seed": 0.1, "seriesB": 0.3, "Seed Round": 0.25, "series c+": 0.15}';

// Self-checks (the rules and the exactness).
assert.notEqual(0.1 + 0.2, 0.3);  // why the weights are summed as exact decimals
assert.deepEqual(parseStageDistribution('{"seed": 0.1, "series a": 0.2, "series b": 0.7}'),
  { seed: 0.1, 'series-a': 0.2, 'series-b': 0.7 });
assert.equal(canonicalStageDistributionText('{"seed": 0.1, "series a": 0.2, "series b": 0.7}'),
  '{"seed": 0.1, "series-a": 0.2, "series-b": 0.7}');
assert.equal(canonicalStageDistributionText('{"seed":0.1,"Seed":0.2,"series a":0.7}'),
  '{"seed": 0.3, "series-a": 0.7}');  // merged exactly (as doubles, 0.1 + 0.2 is 0.30000000000000004)
assert.deepEqual(parseStageDistribution('{"seed":0.1,"Seed":0.2,"series a":0.7}'), { seed: 0.3, 'series-a': 0.7 });
assert.deepEqual(parseStageDistribution(MESSY),
  { 'pre-seed': 0.1, seed: 0.25, 'series-a': 0.2, 'series-b': 0.3, 'series-c+': 0.15 });
assert.equal(parseStageDistribution('{"growth": 1}'), null);                      // unknown key
assert.equal(parseStageDistribution('{"seed": 0.5, "angel": 0.5}'), null);
assert.equal(parseStageDistribution('{"seed": 50, "series a": 50}'), null);        // percentages
assert.equal(parseStageDistribution('{"seed": 0.5, "series a": 0.5, "series b": 0}') !== null, true);
assert.equal(parseStageDistribution('{"seed": 0.9999995}').seed, 0.9999995);       // within 1e-6
assert.equal(parseStageDistribution('{"seed": 0.999999}').seed, 0.999999);         // exactly 1e-6 off
assert.equal(parseStageDistribution('{"seed": 0.9999989}'), null);
assert.equal(parseStageDistribution('{"seed": 1.000001, "series a": 0}'), null);    // a weight > 1
assert.equal(parseStageDistribution('{"seed": -0.1, "series a": 1.1}'), null);
assert.equal(canonicalStageDistributionText('{"seed": 1e-1, "Seed": 0.90}'), '{"seed": 1.00}');
assert.equal(canonicalStageDistributionText('{"seed": 0.5, "seed": 1}'), '{"seed": 1}');  // last wins, as jsonb
assert.equal(parseStageDistribution('{"seed": "1"}'), null);
assert.equal(parseStageDistribution('[1]'), null);
assert.equal(parseStageDistribution('{}'), null);
assert.equal(parseStageDistribution('null'), null);
assert.equal(parseStageDistribution(' {"se\\u0065d" : 1 } ').seed, 1);
assert.throws(() => parseStageDistribution('{"seed": 01}'), SyntaxError);
assert.throws(() => parseStageDistribution('{"seed": 1,}'), SyntaxError);
// 0.1 + 0.2 + 0.7 merged into one stage is exactly 1.0; so are ten keys of 0.1 (as doubles,
// ten 0.1 add up to 0.9999999999999999).
assert.equal(canonicalStageDistributionText('{"seed": 0.1, "Seed": 0.2, "SEED": 0.7}'), '{"seed": 1.0}');
assert.equal(canonicalStageDistributionText(
  '{' + Array.from({ length: 10 }, (_, i) => `"seed${' '.repeat(i)}": 0.1`).join(', ') + '}'), '{"seed": 1.0}');

const calls = Number(process.argv[2] || 200000);
let sink = 0;
for (let i = 0; i < 50000; i++) sink += parseStageDistribution(MESSY).seed;  // warm-up
const ns = new Float64Array(calls);
for (let i = 0; i < calls; i++) {
  const t0 = process.hrtime.bigint();
  const r = parseStageDistribution(MESSY);
  const t1 = process.hrtime.bigint();
  sink += r.seed;
  ns[i] = Number(t1 - t0);
}
if (sink === 42) console.log('');  // keep the results alive
ns.sort();
const pct = (p) => (ns[Math.max(0, Math.ceil(p * calls) - 1)] / 1000).toFixed(2);
console.log(`node parseStageDistribution: p50=${pct(0.5)} p99=${pct(0.99)} p99.9=${pct(0.999)} us (${calls} calls)`);
// Machine-readable lines (bench/lib.sql's format) for bench/report.js.
const line = (...f) => console.log(['RESULT', ...f].join('\t'));
line('title', 'node', 'node', `Node ${process.version} parseStageDistribution on the same 5-key messy distribution, ${calls} calls timed one by one (us per call)`);
for (const [p, q] of [['p50', 0.5], ['p99', 0.99], ['p99.9', 0.999]]) line('median', 'node', 'node', `parseStageDistribution ${p}`, pct(q), 'us/call', String(calls));
