'use strict';
// node bench/report.js [log] [markdown] [png]: the report of one `make bench` run.
// Reads the RESULT lines of the run's log (default bench/results/last-run.log; their format is
// in bench/lib.sql), rewrites the part of docs/benchmarks.md between the markers
//   <!-- make bench: begin -->  and  <!-- make bench: end -->
// (everything outside them stays as written by hand), and draws the ratios with gnuplot into
// docs/benchmarks.png (data and script kept in bench/results/chart.dat and chart.gp).
// Without gnuplot (Debian: gnuplot-nox, scripts/bootstrap.sh) the markdown is still written.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const logFile = process.argv[2] || path.join(root, 'bench/results/last-run.log');
const mdFile = process.argv[3] || path.join(root, 'docs/benchmarks.md');
const pngFile = process.argv[4] || path.join(root, 'docs/benchmarks.png');
const BEGIN = '<!-- make bench: begin -->';
const END = '<!-- make bench: end -->';

// ---- parse ----
const meta = {};
const titles = new Map();   // suite/comparison -> text
const comps = new Map();    // suite/comparison -> { suite, comparison, variants: Map(name -> {value, unit, n}), ratios: Map(variant -> Map(peer -> {med, paired})), peers: [] }
const checks = [];          // { suite, key, label, op, bound, med, paired, verdict }
const num = (s) => (s === undefined || s === '' ? null : Number(s));
function comp(suite, comparison) {
  const k = `${suite}/${comparison}`;
  if (!comps.has(k)) comps.set(k, { suite, comparison, variants: new Map(), ratios: new Map(), peers: [] });
  return comps.get(k);
}
for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
  if (!line.startsWith('RESULT\t')) continue;
  const f = line.split('\t').slice(1);
  switch (f[0]) {
    case 'meta': meta[f[1]] = f.slice(2).join('\t'); break;
    case 'title': titles.set(`${f[1]}/${f[2]}`, f[3].replace(/\b\d{5,}\b/g, (d) => Number(d).toLocaleString('en-US')).replace(/\bus\b/g, 'µs')); comp(f[1], f[2]); break;
    case 'median': comp(f[1], f[2]).variants.set(f[3], { value: num(f[4]), unit: f[5], n: num(f[6]) }); break;
    case 'ratio': {
      const c = comp(f[1], f[2]);
      if (!c.peers.includes(f[4])) c.peers.push(f[4]);
      if (!c.ratios.has(f[3])) c.ratios.set(f[3], new Map());
      c.ratios.get(f[3]).set(f[4], { med: num(f[5]), paired: num(f[6]) });
      break;
    }
    case 'check':
      checks.push({ suite: f[1], key: f[2], label: f[3], op: f[4], bound: num(f[5]), boundText: f[5] || '', med: num(f[6]), paired: num(f[7]), verdict: f[8] || '' });
      break;
    default: break;
  }
}
if (!comps.size && !checks.length) {
  console.error(`report: no RESULT lines in ${logFile}`);
  process.exit(1);
}

// ---- formatting ----
function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (digits !== undefined) return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const a = Math.abs(x);
  const d = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : a >= 1 ? 3 : a >= 0.01 ? 3 : 4;
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}
const ratio = (x) => (x === null || x === undefined ? '–' : fmt(x, x >= 10 ? 1 : 3));
const esc = (s) => String(s).replace(/\|/g, '\\|');
const code = (s) => '`' + s + '`';
const PEER_NAMES = {
  none: 'no trigger', lower: '`lower()`', plpgsql: 'PL/pgSQL', lo_manage: '`lo_manage` (contrib, C)',
  insert_username: '`insert_username` (contrib, C)', update: 'the single `UPDATE`', off: 'statistics off',
  stage_norm: 'stage_norm',
};
const peerName = (p) => PEER_NAMES[p] || code(p);
const table = (head, rows) => [
  '| ' + head.join(' | ') + ' |',
  '|' + head.map((h, i) => (i === 0 ? '---' : '---:')).join('|') + '|',
  ...rows.map((r) => '| ' + r.map(esc).join(' | ') + ' |'),
].join('\n');

// ---- checks: the wall-clock ones with their instruction-count twins (same key) ----
const cg = new Map(checks.filter((c) => c.suite === 'callgrind').map((c) => [c.key, c]));
const wallChecks = checks.filter((c) => c.suite !== 'callgrind');
const boundText = (c) => (c.op && c.bound !== null ? `${c.op.replace('<=', '≤').replace('>=', '≥')} ${c.boundText}` : '');
function decided(c, i) {
  // Instruction counts decide where they exist (deterministic); else the paired ratio; else medians.
  if (i) return { by: 'instructions', verdict: i.verdict };
  const w = c.paired ?? c.med;
  const near = w !== null && c.bound ? Math.abs(w / c.bound - 1) < 0.05 : false;
  return { by: (c.paired !== null ? 'wall-clock, paired' : 'wall-clock') + (near ? ': within 5% of the bound, which wall-clock here cannot decide' : ''),
           verdict: c.verdict, near };
}
const verdictText = (v) => ({ pass: 'met', met: 'met', FAIL: '**not met**', 'NOT MET': '**not met**', '?': '?' }[v] ?? v);
function checkTable(list) {
  const rows = list.map((c) => {
    const i = cg.get(c.key);
    const d = decided(c, i);
    return [c.label, boundText(c), ratio(c.med), ratio(c.paired), i ? `**${ratio(i.med)}**` : '–',
            `${verdictText(d.verdict)} (${d.by})`];
  });
  return table(['check', 'bound', 'wall-clock: medians', 'paired', 'instructions (callgrind)', 'verdict (decided by)'], rows);
}

// ---- per comparison tables ----
// Instructions per row over no trigger, and in brackets the ratio to no trigger by instructions.
function cgCell(comparison, v, i) {
  const base = num(comparison === 'trigger_update' ? meta.callgrind_update_none_per_row : meta.callgrind_none_per_row);
  const what = comparison === 'trigger_update' ? 'UPDATE' : 'INSERT';
  if (v === 'none') return base ? `0 (the ${what} itself: ${fmt(base, 0)})` : '0';
  if (!i) return '–';
  return base ? `${fmt(i.value, 0)} (${ratio((base + i.value) / base)}×)` : fmt(i.value, 0);
}
const companion = { trigger_insert: 'callgrind/cg_insert', trigger_update: 'callgrind/cg_update' };
function compTable(c) {
  const k = `${c.suite}/${c.comparison}`;
  const cgc = companion[c.comparison] ? comps.get(companion[c.comparison]) : null;
  const vs = [...c.variants.entries()].sort((a, b) => a[1].value - b[1].value);
  const unit = (vs.length ? vs[0][1].unit : '').replace(/^us\//, 'µs/');
  const head = ['variant', 'n', `median (${unit})`, ...c.peers.map((p) => `÷ ${peerName(p)}: medians / paired`)];
  if (cgc) head.push('callgrind: instructions per row over no trigger (÷ no trigger)');
  const rows = vs.map(([v, m]) => {
    const r = [code(v), String(m.n ?? ''), fmt(m.value),
      ...c.peers.map((p) => {
        if (p === v) return '1';
        const x = c.ratios.get(v)?.get(p);
        return x ? `${ratio(x.med)} / ${ratio(x.paired)}` : '–';
      })];
    if (cgc) {
      const i = cgc.variants.get(v);
      r.push(cgCell(c.comparison, v, i));
    }
    return r;
  });
  if (cgc) {  // variants only counted by callgrind
    for (const [v, i] of cgc.variants) {
      if (!c.variants.has(v)) rows.push([code(v), '', '–', ...c.peers.map(() => '–'), cgCell(c.comparison, v, i)]);
    }
  }
  return `**${esc(titles.get(k) || k)}**\n\n${table(head, rows)}`;
}

// ---- the Node peer, against stage_norm's per-call percentiles of the same distribution ----
function nodeTable() {
  const n = comps.get('node/node');
  const b = comps.get('distributions/dist_batch');
  if (!n) return '';
  const rows = [];
  for (const p of ['p50', 'p99', 'p99.9']) {
    const nv = n.variants.get(`parseStageDistribution ${p}`)?.value ?? null;
    const sv = b?.variants.get(`stage_norm ${p}`)?.value ?? null;
    const pv = b?.variants.get(`plpgsql ${p}`)?.value ?? null;
    if (nv === null) continue;
    rows.push([p, fmt(sv), fmt(pv), fmt(nv), sv ? ratio(nv / sv) : '–']);
  }
  return `**${esc(titles.get('node/node'))}**, next to the per-call percentiles of suite \`distributions\` (batches of 100 calls, so stage_norm's and PL/pgSQL's p99.9 are not measured)\n\n` +
    table(['percentile', 'stage_norm (µs/call)', 'PL/pgSQL (µs/call)', 'Node (µs/call)', 'Node ÷ stage_norm'], rows);
}

// ---- header ----
const quick = meta.quick === '1';
const dur = num(meta.duration_s);
const durText = dur === null ? '?' : dur >= 3600 ? `${Math.floor(dur / 3600)} h ${Math.round((dur % 3600) / 60)} min` : `${Math.round(dur / 60)} min`;
const load = [meta.loadavg_start, meta.loadavg_end, meta.loadavg_after_callgrind].filter(Boolean);
const out = [];
out.push(BEGIN);
out.push('## The last `make bench` run (generated)');
out.push('');
out.push('*Generated by `bench/report.js` from the RESULT lines of `bench/results/last-run.log`; the next');
out.push('`make bench` rewrites everything between the markers. The sections after it are written by hand');
out.push('and quote the runs of their own issues.*');
out.push('');
if (quick) {
  out.push('> **Quick run (`BENCH_QUICK=1`): a check of the pipeline, not a measurement.** Fewer rounds and');
  out.push('> rows; the callgrind figures at 10,000 rows are dominated by one-time costs.');
  out.push('');
}
const list = [
  `**Run**: ${meta.date || '?'}, commit \`${meta.commit || '?'}\`, ${durText} in all (${meta.suites ? 'suites ' + meta.suites.split(' ').map(code).join(', ') + ', the Node peer, ' : ''}then \`bench/callgrind.sh\` at ${fmt(num(meta.callgrind_rows), 0)} rows and its jsonb variants at ${fmt(num(meta.callgrind_jsonb_rows), 0)}).`,
  `**Machine**: ${meta.cores || '?'} cores (${meta.cpu || '?'}), ${meta.ram || '?'} RAM, ${meta.os || '?'}.`,
  `**PostgreSQL** ${meta.postgres || '?'}; stage_norm ${meta.library_start ? (meta.stage_norm || '?').replace(/, library installed .*/, '') : meta.stage_norm || '?'}. The build measured is the library installed in the system PostgreSQL (\`make bench\` installs the working tree first; \`make bench-run\` measures what is there)${meta.library_start ? `: ${meta.library_start}` : ''}.`,
  `**Cluster** (\`scripts/with-cluster.sh ${meta.cluster_conf || ''}\`): ${meta.settings || '?'}.`,
  `**Rounds**: ${meta.rounds || '?'} per variant, interleaved, order rotating, after a warm-up round (migrate: ${meta.migrate_rounds || '?'}; stats: ${meta.stats_rounds || '?'}); ${fmt(num(meta.rows), 0)} rows per write (normalize: 1,000,000 labels).`,
  `**Load average** (1, 5, 15 min) at the start, at the end of the wall-clock suites, after callgrind: ${load.join(' · ') || '?'}. ${meta.note ? meta.note + ' ' : ''}Wall-clock on this machine is noisy: ratios closer than about 5–10% are not decided by it; the instruction counts (callgrind, repeatable to a few instructions per row) decide where they exist.`,
];
if (meta.library_start && meta.library_end && meta.library_start !== meta.library_end) {
  list.push(`**Warning: the library was replaced during the run** (another \`make install\` on the machine): ${meta.library_start} at the start, ${meta.library_end} at the end; the figures may mix two builds.`);
}
for (const l of list) out.push('- ' + l);
out.push('');
out.push('![Ratios of the last make bench run against each peer, with the bounds of the issues](benchmarks.png)');
out.push('');
out.push('Every ratio below is *variant ÷ peer*, measured in this run: "medians" divides the variants\'');
out.push('medians; "paired" is the median over the rounds of the ratio within a round (the variants of a');
out.push('round run back to back, so a slow stretch of the shared machine weighs on both sides).');
out.push('');

const SUITES = [
  ['normalize', '`normalize_stage` vs `lower()` (issues #2, #14)', ['normalize', 'normalize_custom']],
  ['trigger', 'The trigger against no trigger, contrib\'s C triggers and PL/pgSQL (issues #9, #13)', ['trigger']],
  ['distributions', 'Distributions and arrays against PL/pgSQL and the Node peer (issue #15)', ['distributions', 'node']],
  ['migrate', '`stage_norm.migrate` against the single `UPDATE` (issue #16)', ['migrate']],
  ['stats', 'Cluster-wide statistics on vs off, 8 writers (issue #17)', ['stats']],
];
out.push('### Checks of the issues');
out.push('');
out.push(checkTable(wallChecks));
out.push('');
for (const [, heading, suites] of SUITES) {
  const cs = [...comps.values()].filter((c) => suites.includes(c.suite) && c.suite !== 'node' && c.comparison !== 'dist_batch');
  if (!cs.length && !(suites.includes('node') && comps.has('node/node'))) continue;
  out.push(`### ${heading}`);
  out.push('');
  for (const c of cs) {
    out.push(compTable(c));
    out.push('');
  }
  if (suites.includes('distributions') && comps.has('distributions/dist_batch')) {
    const b = comps.get('distributions/dist_batch');
    out.push(`**${esc(titles.get('distributions/dist_batch'))}**`);
    out.push('');
    out.push(table(['variant', 'batches', 'µs/call'], [...b.variants.entries()].map(([v, m]) => [code(v), String(m.n), fmt(m.value)])));
    out.push('');
  }
  if (suites.includes('node')) {
    const t = nodeTable();
    if (t) { out.push(t); out.push(''); }
  }
  if (suites.includes('trigger')) {
    const tc = cg.get('tc');
    out.push(`Instruction counts (\`bench/callgrind.sh\`, ${fmt(num(meta.callgrind_rows), 0)} rows, start-up of ${fmt(num(meta.callgrind_startup) / 1e6, 1)} M instructions subtracted): the INSERT with no trigger costs ${fmt(num(meta.callgrind_none_per_row), 0)} instructions per row${tc ? `; enforce on values already canonical / none: ${ratio(tc.med)}` : ''}${meta.callgrind_enforce_minus_off ? `; enforce − off: ${fmt(num(meta.callgrind_enforce_minus_off), 0)} instructions per row (#31: ≤ 300)` : ''}. The checks above by instructions are \`(variant − start-up) / (peer − start-up)\`.`);
    out.push('');
  }
}
out.push(END);
const section = out.join('\n');

// ---- write the markdown ----
let md = fs.readFileSync(mdFile, 'utf8');
// The markers count on a line of their own only (the text may quote them).
const lineAt = (marker, from) => {
  const m = new RegExp('^' + marker.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '[ \t]*$', 'm').exec(md.slice(from));
  return m ? from + m.index : -1;
};
const b = lineAt(BEGIN, 0);
const e = b >= 0 ? lineAt(END, b) : -1;
if (b >= 0 && e > b) {
  md = md.slice(0, b) + section + md.slice(e + END.length);
} else {
  // First run: after the introduction (before the first "## " heading).
  const at = md.search(/^## /m);
  md = at >= 0 ? md.slice(0, at) + section + '\n\n' + md.slice(at) : md + '\n' + section + '\n';
}
fs.writeFileSync(mdFile, md);
console.log(`report: ${path.relative(root, mdFile)} rewritten between the markers (${wallChecks.length} checks, ${comps.size} comparisons)`);

// ---- the chart ----
// One row per check (and the Node peer): the wall-clock ratio (paired, else medians) and the
// instruction-count ratio as bars from 1 on a log scale, the bound as a black tick.
const rowsForChart = [];
for (const [, heading, suites] of SUITES) {
  // Ratios only: the checks in ms (migrate's longest batch) are in the table, not on the chart.
  for (const c of wallChecks.filter((x) => suites.includes(x.suite) && !/\(ms\)/.test(x.label))) {
    const i = cg.get(c.key);
    const w = c.paired ?? c.med;
    const d = decided(c, i);
    rowsForChart.push({ group: heading, label: `${c.label}`.replace(/"/g, "'"), wall: w, instr: i ? i.med : null, bound: c.bound,
                        ok: d.near ? 3 : ['pass', 'met'].includes(d.verdict) ? 1 : ['FAIL', 'NOT MET'].includes(d.verdict) ? 0 : 2 });
  }
  if (suites.includes('node')) {
    const n = comps.get('node/node')?.variants.get('parseStageDistribution p50')?.value;
    const s = comps.get('distributions/dist_batch')?.variants.get('stage_norm p50')?.value;
    if (n && s) rowsForChart.push({ group: heading, label: 'Node parseStageDistribution p50 / stage_norm p50 (per call)', wall: n / s, instr: null, bound: null, ok: 2 });
  }
}
const resDir = path.join(root, 'bench/results');
fs.mkdirSync(resDir, { recursive: true });
const datFile = path.join(resDir, 'chart.dat');
const gpFile = path.join(resDir, 'chart.gp');
const N = rowsForChart.length;
const v = (x) => (x === null || x === undefined || !Number.isFinite(x) || x <= 0 ? 'NaN' : String(x));
// y = N - index (first check on top); columns: y, label, wall, instr, bound, ok, and the two
// values as printed in the tables.
const lab = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '' : ratio(x));
fs.writeFileSync(datFile, rowsForChart.map((r, i) =>
  [N - i, `"${r.label}"`, v(r.wall), v(r.instr), v(r.bound), r.ok, `"${lab(r.wall)}"`, `"${lab(r.instr)}"`].join('\t')).join('\n') + '\n');
// A thin line between the suites' groups.
const separators = rowsForChart.map((r, i) => (i > 0 && r.group !== rowsForChart[i - 1].group ? N - i + 0.5 : null))
  .filter((y) => y !== null)
  .map((y) => `set arrow from graph 0, first ${y} to graph 1, first ${y} nohead lc rgb "#bbbbbb" lw 1`).join('\n');
const subtitle = `${meta.date || ''}, commit ${meta.commit || '?'}, ${meta.cores || '?'} cores, PostgreSQL ${(meta.postgres || '').split(' ')[0]}, ${meta.rounds || '?'} rounds${quick ? ' (QUICK RUN: not a measurement)' : ''}`;
const gp = `# Generated by bench/report.js: gnuplot bench/results/chart.gp
set terminal pngcairo size 1300,${Math.max(400, 60 + 34 * N)} font "DejaVu Sans,10"
set output "${path.relative(root, pngFile)}"
set datafile separator "\\t"
set title "make bench: ratios against each peer (variant / peer; log scale; | = the issue's bound)\\n{/*0.85 ${subtitle}}"
set logscale x
set xrange [0.01:400]
set yrange [0.4:${N + 0.6}]
set xtics ("0.01" 0.01, "0.03" 0.03, "0.1" 0.1, "0.3" 0.3, "1" 1, "3" 3, "10" 10, "30" 30, "100" 100)
set label "verdict" at 250, graph 1 offset 0, 0.8 center font ",9"
set grid xtics lc rgb "#dddddd"
set ytics nomirror scale 0 font ",9" noenhanced
set key outside bottom center horizontal
set style fill solid 0.85 noborder
set lmargin 62
set rmargin 7
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "#888888" dt 2
${separators}
lo(x) = x < 1 ? x : 1
hi(x) = x < 1 ? 1 : x
plot "${path.relative(root, datFile)}" using 3:1:(lo($3)):(hi($3)):($1 + 0.02):($1 + 0.36):ytic(2) with boxxyerror lc rgb "#4472c4" title "wall-clock (paired, else medians)", \\
     "" using 4:1:(lo($4)):(hi($4)):($1 - 0.36):($1 - 0.02) with boxxyerror lc rgb "#ed7d31" title "instructions (callgrind)", \\
     "" using 5:($1 - 0.42):(0):(0.84) with vectors nohead lw 3 lc rgb "black" title "bound", \\
     "" using ($3 >= 1 ? $3 * 1.12 : NaN):($1 + 0.19):7 with labels left font ",8" notitle, \\
     "" using ($3 < 1 ? $3 / 1.12 : NaN):($1 + 0.19):7 with labels right font ",8" notitle, \\
     "" using ($4 >= 1 ? $4 * 1.12 : NaN):($1 - 0.19):8 with labels left font ",8" notitle, \\
     "" using ($4 < 1 ? $4 / 1.12 : NaN):($1 - 0.19):8 with labels right font ",8" notitle, \\
     "" using ($6 == 1 ? 250 : NaN):1:("met") with labels center font ",9" tc rgb "#2e7d32" notitle, \\
     "" using ($6 == 0 ? 250 : NaN):1:("not met") with labels center font ",9" tc rgb "#c62828" notitle, \\
     "" using ($6 == 3 ? 250 : NaN):1:("undecided") with labels center font ",9" tc rgb "#777777" notitle
`;
fs.writeFileSync(gpFile, gp);
try {
  execFileSync('gnuplot', [path.relative(root, gpFile)], { stdio: 'inherit', cwd: root });
  console.log(`report: ${path.relative(root, pngFile)} drawn (${N} ratios)`);
} catch (err) {
  console.error(`report: gnuplot failed or is missing (Debian: gnuplot-nox; scripts/bootstrap.sh): ${err.message}`);
  process.exit(1);
}
