-- Benchmark helpers: time a statement in the server (no client round trip in the figure).
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.runs (suite text, variant text, round int, ms float8);
CREATE OR REPLACE FUNCTION bench.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
-- Medians per variant and the ratio to a baseline variant.
CREATE OR REPLACE FUNCTION bench.report(p_suite text, p_baseline text)
RETURNS TABLE (variant text, runs bigint, median_ms numeric, ratio numeric) LANGUAGE sql AS $$
    WITH m AS (
        SELECT r.variant, count(*) AS runs,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ms) AS med
          FROM bench.runs r WHERE r.suite = p_suite GROUP BY r.variant)
    SELECT m.variant, m.runs, round(m.med::numeric, 1),
           round((m.med / (SELECT b.med FROM m b WHERE b.variant = p_baseline))::numeric, 3)
      FROM m ORDER BY m.med;
$$;
-- 1,000,000 messy labels. ascii: all ASCII; mixed: about 1 in 10 non-ASCII.
CREATE OR REPLACE FUNCTION bench.messy_labels(n int, with_unicode boolean)
RETURNS SETOF text LANGUAGE sql AS $$
    SELECT CASE WHEN with_unicode AND i % 10 = 0
                THEN (ARRAY['Ｓｅｒｉｅｓ　Ａ', 'Series B–1', 'pre−seed', 'Série C'])[1 + (i / 10) % 4]
                ELSE (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series D', 'Seed Round', 'seed',
                            'series-a', 'PRE-SEED', 'Series C Plus', 'series b2', 'Series A-2 Round',
                            'series-c+', 'Angel', 'Growth', 'Series E', 'seed round', 'Pre Seed',
                            'SERIES B', 'series a', 'Series C+'])[1 + (i * 7) % 20] END
      FROM generate_series(1, n) i;
$$;
-- Machine-readable results, one line each, for bench/report.js (which rewrites the generated
-- section of docs/benchmarks.md and draws docs/benchmarks.png). Tab-separated, first field RESULT:
--   RESULT meta   <key> <value>
--   RESULT title  <suite> <comparison> <text>
--   RESULT median <suite> <comparison> <variant> <value> <unit> <n>
--   RESULT ratio  <suite> <comparison> <variant> <peer> <ratio of the medians> <paired ratio>
--   RESULT check  <suite> <key> <label> <op> <bound> <medians> <paired> <verdict>
-- (paired: the median over the rounds of the ratio within a round; empty when not measured in
-- rounds). A NULL field is printed empty. The suites print them with psql's unaligned,
-- tuples-only format, after their human-readable tables; nothing here is timed.
CREATE OR REPLACE FUNCTION bench.result_line(VARIADIC f text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'RESULT' || E'\t' || array_to_string(f, E'\t', '')
$$;
-- The median lines of every variant of bench.runs' suite p_comparison (times p_scale, in
-- p_unit), then the ratio lines of every variant against each of p_peers (medians and paired).
CREATE OR REPLACE FUNCTION bench.result_lines(p_suite text, p_comparison text, p_peers text[],
                                              p_scale float8 DEFAULT 1, p_unit text DEFAULT 'ms')
RETURNS SETOF text LANGUAGE sql AS $$
    WITH r AS (SELECT x.variant, x.round, x.ms FROM bench.runs x WHERE x.suite = p_comparison),
    m AS (SELECT r.variant, count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ms) AS med
            FROM r GROUP BY r.variant),
    l AS (
        SELECT 0 AS o, m.med AS k, bench.result_line('median', p_suite, p_comparison, m.variant,
                   round((m.med * p_scale)::numeric, 4)::text, p_unit, m.n::text) AS line
          FROM m
        UNION ALL
        SELECT p.o, m.med, bench.result_line('ratio', p_suite, p_comparison, m.variant, p.peer,
                   round((m.med / nullif(pm.med, 0))::numeric, 4)::text,
                   (SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ms / nullif(b.ms, 0)))::numeric, 4)
                      FROM r a JOIN r b USING (round) WHERE a.variant = m.variant AND b.variant = p.peer)::text)
          FROM unnest(p_peers) WITH ORDINALITY p(peer, o)
          JOIN m pm ON pm.variant = p.peer
          JOIN m ON m.variant <> p.peer)
    SELECT l.line FROM l ORDER BY l.o, l.k;
$$;
-- A check line for the ratio a / b of two variants of bench.runs' suite p_comparison: medians
-- and paired, the verdict on the paired ratio against p_op p_bound ('<=', '<', '>=').
CREATE OR REPLACE FUNCTION bench.check_line(p_suite text, p_key text, p_label text, p_op text, p_bound numeric,
                                            p_comparison text, p_a text, p_b text)
RETURNS text LANGUAGE sql AS $$
    WITH r AS (SELECT x.variant, x.round, x.ms FROM bench.runs x WHERE x.suite = p_comparison),
    v AS (SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM r WHERE variant = p_a)
                 / nullif((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM r WHERE variant = p_b), 0) AS medians,
                 (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ms / nullif(b.ms, 0))
                    FROM r a JOIN r b USING (round) WHERE a.variant = p_a AND b.variant = p_b) AS paired)
    SELECT bench.result_line('check', p_suite, p_key, p_label, p_op, p_bound::text,
                             round(v.medians::numeric, 4)::text, round(v.paired::numeric, 4)::text,
                             CASE WHEN v.paired IS NULL THEN '?'
                                  WHEN (p_op = '<=' AND v.paired <= p_bound) OR (p_op = '<' AND v.paired < p_bound)
                                    OR (p_op = '>=' AND v.paired >= p_bound) THEN 'pass' ELSE 'FAIL' END)
      FROM v;
$$;
