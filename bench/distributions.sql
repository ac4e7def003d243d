-- Stage distributions (jsonb stage -> weight) and stage arrays: stage_norm's
-- normalize_stage_distribution(jsonb), normalize_stages(text[]) and its trigger on a jsonb
-- column, against PL/pgSQL peers (bench/dist_peers.sql). Medians of interleaved rounds whose
-- variant order rotates every round; round 0 is a warm-up and is not recorded; the targets are
-- printed at the end next to the measured values (reported, not enforced).
--
-- a) normalize_stage_distribution on the 5-key messy distribution MESSY below; the argument is
--    read from a table column, so the planner cannot fold the call. Two measures per variant:
--    - N calls: one statement, SELECT count(f(d)) over a table of :dist_calls rows (default
--      100,000) holding MESSY, timed in the server (bench.time_ms); per call = time / N.
--    - p50 / p99 per call: batches of 100 calls (SELECT count(f(d)) over a 100-row table, static
--      SQL in PL/pgSQL, so planned once), clock_timestamp() read before and after each batch;
--      per call = batch time / 100. :dist_batches batches (default 2,000) in all, spread over the
--      rounds; the percentiles are over every recorded batch.
--    'baseline' is the same statement without the call (count(d)): what the statement itself costs.
-- b) normalize_stages on a 5,000-element array of messy labels (all known to the built-in rules,
--    3 in 4 non-canonical): N calls = one statement over :stages_calls rows (default 50) holding
--    the array; p50 / p99 = batches of 1 call, :stages_batches (default 400) in all.
--    'baseline' is count(cardinality(a)): the statement plus the fetch and detoast of the array.
-- c) write path: INSERT ... SELECT of bench.rows (default 1,000,000) rows (id, alloc jsonb) from
--    a pre-built source table into an empty table with a primary key: no trigger, stage_norm's
--    trigger (stage_norm.attach(tbl, 'alloc'), stage_norm.mode = enforce) and the PL/pgSQL peer
--    trigger; 5 keys per distribution, 3 in 4 rows with messy keys. And all rows already
--    canonical: no trigger vs stage_norm. Every statement runs at top level (psql \gexec,
--    autocommit), as in trigger.sql: per round CHECKPOINT, then per variant TRUNCATE, SET, the
--    timed INSERT.
SET max_parallel_workers_per_gather = 0;  -- per-core cost, less noise
SET client_min_messages = warning;
\ir dist_peers.sql
SELECT coalesce(nullif(current_setting('bench.rows', true), ''), '1000000')::int AS rows,
       coalesce(nullif(current_setting('bench.rounds', true), ''), '7')::int AS rounds \gset
\if :{?dist_calls}
\else
\set dist_calls 100000
\endif
\if :{?dist_batches}
\else
\set dist_batches 2000
\endif
\if :{?stages_calls}
\else
\set stages_calls 50
\endif
\if :{?stages_batches}
\else
\set stages_batches 400
\endif
\set messy '{"Series A ": 0.2, "pre_seed": 0.1, "seriesB": 0.3, "Seed Round": 0.25, "series c+": 0.15}'

-- a), b) sources.
DROP TABLE IF EXISTS bench.dist_batch, bench.dist_n, bench.stages_batch, bench.stages_n;
CREATE TABLE bench.dist_batch WITH (autovacuum_enabled = false) AS
    SELECT :'messy'::jsonb AS d FROM generate_series(1, 100);
CREATE TABLE bench.dist_n WITH (autovacuum_enabled = false) AS
    SELECT :'messy'::jsonb AS d FROM generate_series(1, :dist_calls);
CREATE TABLE bench.stages_batch WITH (autovacuum_enabled = false) AS
    SELECT array_agg((ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series D', 'Seed Round', 'seed',
                            'series-a', 'PRE-SEED', 'Series C Plus', 'series b2', 'Series A-2 Round',
                            'series-c+', 'Pre Seed', 'SERIES B', 'series a', 'Series E', 'pre-seed',
                            'seed round', 'series-b', 'series c+'])[1 + (i * 7) % 20] ORDER BY i) AS a
      FROM generate_series(1, 5000) i;
CREATE TABLE bench.stages_n WITH (autovacuum_enabled = false) AS
    SELECT s.a FROM bench.stages_batch s, generate_series(1, :stages_calls);
VACUUM ANALYZE bench.dist_batch, bench.dist_n, bench.stages_batch, bench.stages_n;

-- c) sources: 5 keys per distribution, one of three weight sets; rows with i % 4 <> 0 have messy
-- keys (every key non-canonical, spellings rotating), the others canonical keys.
CREATE OR REPLACE FUNCTION bench.stage_distributions(n int, messy boolean)
RETURNS TABLE (id bigint, alloc jsonb) LANGUAGE sql AS $$
    SELECT i::bigint,
           CASE WHEN messy AND i % 4 <> 0 THEN jsonb_build_object(
                    (ARRAY['pre_seed', 'PRE-SEED', 'Pre Seed', 'preseed round'])[1 + (i / 4) % 4], w.w[1 + i % 3][1],
                    (ARRAY['Seed Round', 'seed round', 'SEED', 'Seed'])[1 + (i / 4 + 1) % 4], w.w[1 + i % 3][2],
                    (ARRAY['Series A ', 'series a', 'Series A-2 Round', 'seriesA'])[1 + (i / 4 + 2) % 4], w.w[1 + i % 3][3],
                    (ARRAY['seriesB', 'SERIES B', 'series b2', 'Series B Round'])[1 + (i / 4 + 3) % 4], w.w[1 + i % 3][4],
                    (ARRAY['series c+', 'Series C Plus', 'Series D', 'Series E'])[1 + (i / 7) % 4], w.w[1 + i % 3][5])
                ELSE jsonb_build_object('pre-seed', w.w[1 + i % 3][1], 'seed', w.w[1 + i % 3][2],
                                        'series-a', w.w[1 + i % 3][3], 'series-b', w.w[1 + i % 3][4],
                                        'series-c+', w.w[1 + i % 3][5]) END
      FROM generate_series(1, n) i,
           (SELECT ARRAY[[0.1, 0.25, 0.2, 0.3, 0.15], [0.05, 0.15, 0.3, 0.3, 0.2], [0.2, 0.2, 0.2, 0.2, 0.2]] AS w) w;
$$;
DROP TABLE IF EXISTS bench.dsrc_messy, bench.dsrc_canonical;
CREATE TABLE bench.dsrc_messy WITH (autovacuum_enabled = false) AS SELECT * FROM bench.stage_distributions(:rows, true);
CREATE TABLE bench.dsrc_canonical WITH (autovacuum_enabled = false) AS SELECT * FROM bench.stage_distributions(:rows, false);
VACUUM ANALYZE bench.dsrc_messy, bench.dsrc_canonical;

-- c) INSERT tables (id bigint PRIMARY KEY, alloc jsonb), one per variant with its own trigger.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['none', 'stage_norm', 'plpgsql', 'canonical_none', 'canonical_stage_norm'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS bench.%I', 'td_' || t);
        EXECUTE format('CREATE TABLE bench.%I (id bigint PRIMARY KEY, alloc jsonb) WITH (autovacuum_enabled = false)', 'td_' || t);
    END LOOP;
END $$;
DO $$
BEGIN
    PERFORM stage_norm.attach('bench.td_stage_norm', 'alloc');
    PERFORM stage_norm.attach('bench.td_canonical_stage_norm', 'alloc');
END $$;
CREATE TRIGGER plpgsql_distribution BEFORE INSERT OR UPDATE ON bench.td_plpgsql
    FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_distribution_trigger();

-- a), b): one batch series; returns each batch's time in microseconds. Static SQL per variant
-- (planned once, kept by PL/pgSQL), so a batch costs the statement's execution, not its planning.
CREATE OR REPLACE FUNCTION bench.dist_batches(v text, batches int)
RETURNS SETOF float8 LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    n bigint;
BEGIN
    FOR b IN 1..batches LOOP
        t0 := clock_timestamp();
        CASE v
            WHEN 'dist/stage_norm' THEN
                SELECT count(stage_norm.normalize_stage_distribution(d)) INTO n FROM bench.dist_batch;
            WHEN 'dist/plpgsql' THEN
                SELECT count(bench.plpgsql_normalize_stage_distribution(d)) INTO n FROM bench.dist_batch;
            WHEN 'dist/baseline' THEN
                SELECT count(d) INTO n FROM bench.dist_batch;
            WHEN 'stages/stage_norm' THEN
                SELECT count(stage_norm.normalize_stages(a)) INTO n FROM bench.stages_batch;
            WHEN 'stages/plpgsql' THEN
                SELECT count(bench.plpgsql_normalize_stages(a)) INTO n FROM bench.stages_batch;
            WHEN 'stages/baseline' THEN
                SELECT count(cardinality(a)) INTO n FROM bench.stages_batch;
        END CASE;
        RETURN NEXT extract(epoch FROM clock_timestamp() - t0) * 1e6;
    END LOOP;
END $$;

CREATE TABLE IF NOT EXISTS bench.batch_us (suite text, variant text, round int, us float8);

-- The plan: one statement per row, run in order by \gexec. Phase 1 (a, b), then phase 2 (c),
-- each with its rounds 0..rounds.
CREATE OR REPLACE FUNCTION bench.dist_plan(rounds int, dist_calls int, dist_batches int,
                                           stages_calls int, stages_batches int)
RETURNS TABLE (seq int, stmt text) LANGUAGE plpgsql AS $$
DECLARE
    cv text[] := ARRAY['stage_norm', 'plpgsql', 'baseline'];
    cf text[] := ARRAY['count(stage_norm.%s(%s))', 'count(bench.plpgsql_%s(%s))', NULL];
    -- per call part: suite prefix, function, argument, baseline expression, N-call table, batches per round
    parts text[] := ARRAY['dist', 'stages'];
    fn text[] := ARRAY['normalize_stage_distribution', 'normalize_stages'];
    arg text[] := ARRAY['d', 'a'];
    base text[] := ARRAY['count(d)', 'count(cardinality(a))'];
    nb int[] := ARRAY[greatest(1, ceil(dist_batches::numeric / greatest(rounds, 1))::int),
                      greatest(1, ceil(stages_batches::numeric / greatest(rounds, 1))::int)];
    tv text[] := ARRAY['none', 'stage_norm', 'plpgsql', 'canonical_none', 'canonical_stage_norm'];
    ts text[] := ARRAY['dist_trigger_messy', 'dist_trigger_messy', 'dist_trigger_messy',
                       'dist_trigger_canonical', 'dist_trigger_canonical'];
    tv_short text[] := ARRAY['none', 'stage_norm', 'plpgsql', 'none', 'stage_norm'];
    tsrc text[] := ARRAY['dsrc_messy', 'dsrc_messy', 'dsrc_messy', 'dsrc_canonical', 'dsrc_canonical'];
    r int; j int; k int; p int; e text;
BEGIN
    seq := 0;
    FOR r IN 0..rounds LOOP
        FOR p IN 1..2 LOOP
            FOR j IN 0..2 LOOP
                k := 1 + (r + j) % 3;
                e := CASE WHEN k = 3 THEN base[p] ELSE format(cf[k], fn[p], arg[p]) END;
                seq := seq + 1;
                stmt := format('INSERT INTO bench.runs VALUES (%L, %L, %s, bench.time_ms(%L))',
                               parts[p] || '_call', cv[k], r,
                               format('SELECT %s FROM bench.%I', e, parts[p] || '_n'));
                RETURN NEXT;
                seq := seq + 1;
                stmt := format('INSERT INTO bench.batch_us SELECT %L, %L, %s, us FROM bench.dist_batches(%L, %s) us',
                               parts[p] || '_batch', cv[k], r, parts[p] || '/' || cv[k], nb[p]);
                RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
    FOR r IN 0..rounds LOOP
        seq := seq + 1; stmt := 'CHECKPOINT'; RETURN NEXT;
        FOR j IN 0..cardinality(tv) - 1 LOOP
            k := 1 + (r + j) % cardinality(tv);
            FOREACH stmt IN ARRAY ARRAY[
                format('TRUNCATE bench.%I', 'td_' || tv[k]),
                'SET stage_norm.mode = enforce',
                'SET stage_norm.enforce_percent = 100',
                format('INSERT INTO bench.runs VALUES (%L, %L, %s, bench.time_ms(%L))', ts[k], tv_short[k], r,
                       format('INSERT INTO bench.%I SELECT id, alloc FROM bench.%I', 'td_' || tv[k], tsrc[k]))] LOOP
                seq := seq + 1; RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;

-- A check's value from timings keyed 'suite/variant': 'a:b' is a/b; 'added' is stage_norm's
-- time over no trigger as a share of the PL/pgSQL trigger's (messy rows).
CREATE OR REPLACE FUNCTION bench.dist_check_value(j jsonb, f text) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN f = 'added' THEN
                ((j->>'dist_trigger_messy/stage_norm')::float8 - (j->>'dist_trigger_messy/none')::float8)
                / nullif((j->>'dist_trigger_messy/plpgsql')::float8 - (j->>'dist_trigger_messy/none')::float8, 0)
           ELSE (j->>split_part(f, ':', 1))::float8 / nullif((j->>split_part(f, ':', 2))::float8, 0) END
$$;

DELETE FROM bench.runs WHERE suite IN ('dist_call', 'stages_call', 'dist_trigger_messy', 'dist_trigger_canonical');
DELETE FROM bench.batch_us WHERE suite IN ('dist_batch', 'stages_batch');
SET stage_norm.max_mode = enforce;
SELECT stmt FROM bench.dist_plan(:rounds, :dist_calls, :dist_batches, :stages_calls, :stages_batches) ORDER BY seq \gexec
DELETE FROM bench.runs WHERE suite IN ('dist_call', 'stages_call', 'dist_trigger_messy', 'dist_trigger_canonical') AND round = 0;  -- warm-up
DELETE FROM bench.batch_us WHERE suite IN ('dist_batch', 'stages_batch') AND round = 0;
RESET stage_norm.mode;
RESET stage_norm.enforce_percent;

-- Per call figures of a) and b): the N-call statement's median, per call, ratio to stage_norm;
-- the batch percentiles per call, net of the baseline's, and the ratios to stage_norm.
CREATE OR REPLACE FUNCTION bench.per_call_report(p text, calls int, per_batch int)
RETURNS TABLE (variant text, rounds bigint, "N calls: median ms" numeric, "per call us" numeric,
               "ratio" numeric, batches bigint, "p50 us" numeric, "p99 us" numeric,
               "p50 - baseline us" numeric, "p50 ratio" numeric, "p99 ratio" numeric)
LANGUAGE sql AS $$
    WITH m AS (
        SELECT r.variant, count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ms) AS med
          FROM bench.runs r WHERE r.suite = p || '_call' GROUP BY r.variant),
    b AS (
        SELECT u.variant, count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY u.us / per_batch) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY u.us / per_batch) AS p99
          FROM bench.batch_us u WHERE u.suite = p || '_batch' GROUP BY u.variant),
    s AS (SELECT m.med, b.p50, b.p99 FROM m JOIN b USING (variant) WHERE variant = 'stage_norm'),
    z AS (SELECT b.p50 FROM b WHERE variant = 'baseline')
    SELECT m.variant, m.n, round(m.med::numeric, 1), round((m.med * 1000 / calls)::numeric, 3),
           round((m.med / s.med)::numeric, 3), b.n, round(b.p50::numeric, 3), round(b.p99::numeric, 3),
           CASE WHEN m.variant <> 'baseline' THEN round((b.p50 - z.p50)::numeric, 3) END,
           round((b.p50 / s.p50)::numeric, 3), round((b.p99 / s.p99)::numeric, 3)
      FROM m JOIN b USING (variant) LEFT JOIN s ON true LEFT JOIN z ON true
     ORDER BY m.med;
$$;

\echo 'a) normalize_stage_distribution(d), d =' :'messy' '(from a table column).'
\echo '   N calls:' :dist_calls 'calls in one statement, per call = time / N; ratio = variant / stage_norm.'
\echo '   p50 / p99: batches of 100 calls timed with clock_timestamp(), per call = batch / 100; baseline = count(d), no call.'
SELECT * FROM bench.per_call_report('dist', :dist_calls, 100);
\echo 'b) normalize_stages(a), a = 5,000 messy labels (3 in 4 non-canonical). N calls:' :stages_calls 'calls in one statement;'
\echo '   p50 / p99: batches of 1 call; baseline = count(cardinality(a)): the fetch and detoast of the array, no call.'
SELECT * FROM bench.per_call_report('stages', :stages_calls, 1);
\echo 'c)' :rows 'distributions of 5 keys, 3 in 4 with messy keys; INSERT ... SELECT into an empty table with a primary key (ratio to no trigger):'
SELECT * FROM bench.report('dist_trigger_messy', 'none');
\echo :rows 'distributions, all canonical (ratio to no trigger):'
SELECT * FROM bench.report('dist_trigger_canonical', 'none');
\echo 'time added over no trigger (medians, ms):'
WITH m AS (
    SELECT suite, variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med
      FROM bench.runs WHERE suite LIKE 'dist_trigger_%' GROUP BY suite, variant)
SELECT m.suite, m.variant, round((m.med - n.med)::numeric, 1) AS added_ms,
       round(((m.med - n.med) * 1000 / :rows)::numeric, 3) AS added_us_per_row
  FROM m JOIN m n ON n.suite = m.suite AND n.variant = 'none'
 WHERE m.variant <> 'none' ORDER BY m.suite, m.med;
\echo 'spread over the rounds (ms), to judge the noise:'
SELECT suite, variant, round(min(ms)::numeric, 1) AS min_ms, round(max(ms)::numeric, 1) AS max_ms,
       round(((max(ms) - min(ms)) / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS range_over_median
  FROM bench.runs WHERE suite IN ('dist_call', 'stages_call', 'dist_trigger_messy', 'dist_trigger_canonical')
 GROUP BY suite, variant ORDER BY suite, min(ms);

-- Did every variant do its job? The peers and stage_norm must agree; the tables hold the last
-- round's rows.
\echo 'sanity (last round):'
SELECT (SELECT bool_and(stage_norm.normalize_stage_distribution(d) IS NOT DISTINCT FROM bench.plpgsql_normalize_stage_distribution(d)
                        AND stage_norm.normalize_stage_distribution(d) IS NOT NULL)
          FROM bench.dist_batch) AS dist_agree,
       (SELECT stage_norm.normalize_stages(a) IS NOT DISTINCT FROM bench.plpgsql_normalize_stages(a)
               AND array_position(stage_norm.normalize_stages(a), NULL) IS NULL
          FROM bench.stages_batch) AS stages_agree,
       (SELECT count(*) FROM bench.dsrc_messy) AS rows,
       (SELECT count(*) FROM bench.td_none) AS none_rows,
       (SELECT round(avg((s.alloc IS DISTINCT FROM p.alloc)::int), 3)
          FROM bench.dsrc_messy s JOIN bench.td_plpgsql p USING (id)) AS share_rewritten,
       (SELECT count(*) FILTER (WHERE n.alloc IS DISTINCT FROM p.alloc)
          FROM bench.td_plpgsql p FULL JOIN bench.td_stage_norm n USING (id)) AS stage_norm_vs_plpgsql_wrong,
       (SELECT count(*) FILTER (WHERE n.alloc IS DISTINCT FROM s.alloc)
          FROM bench.dsrc_canonical s FULL JOIN bench.td_canonical_stage_norm n USING (id)) AS canonical_changed;

\echo 'targets (reported, not enforced). "medians": ratio of the variants'' medians; "paired": median over'
\echo 'the rounds of the ratio within each round (the variants of a round run back to back, so a slow'
\echo 'stretch of this shared machine weighs on both sides of a paired ratio); p50 / p99: of the batches:'
CREATE TEMP TABLE dist_checks AS
WITH m AS (
    SELECT suite || '/' || variant AS v, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med
      FROM bench.runs WHERE suite IN ('dist_call', 'stages_call', 'dist_trigger_messy', 'dist_trigger_canonical')
     GROUP BY suite, variant
    UNION ALL
    SELECT suite || '/' || variant || '/p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY us)
      FROM bench.batch_us WHERE suite IN ('dist_batch', 'stages_batch') GROUP BY suite, variant
    UNION ALL
    SELECT suite || '/' || variant || '/p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY us)
      FROM bench.batch_us WHERE suite IN ('dist_batch', 'stages_batch') GROUP BY suite, variant),
x AS (SELECT jsonb_object_agg(v, med) AS j FROM m),
r AS (SELECT round, jsonb_object_agg(suite || '/' || variant, ms) AS j
        FROM bench.runs WHERE suite IN ('dist_call', 'stages_call', 'dist_trigger_messy', 'dist_trigger_canonical')
       GROUP BY round),
def (n, label, op, target, f, paired) AS (VALUES
      (1, 'a) distribution per call, N calls: plpgsql / stage_norm', '>=', 20, 'dist_call/plpgsql:dist_call/stage_norm', true),
      (2, 'a) distribution per call, p50: plpgsql / stage_norm', '>=', 20, 'dist_batch/plpgsql/p50:dist_batch/stage_norm/p50', false),
      (3, 'a) distribution per call, p99: plpgsql / stage_norm', '>=', 20, 'dist_batch/plpgsql/p99:dist_batch/stage_norm/p99', false),
      (4, 'b) stages (5,000) per call, N calls: plpgsql / stage_norm', '>=', 20, 'stages_call/plpgsql:stages_call/stage_norm', true),
      (5, 'b) stages (5,000) per call, p50: plpgsql / stage_norm', '>=', 20, 'stages_batch/plpgsql/p50:stages_batch/stage_norm/p50', false),
      (6, 'b) stages (5,000) per call, p99: plpgsql / stage_norm', '>=', 20, 'stages_batch/plpgsql/p99:stages_batch/stage_norm/p99', false),
      (7, 'c) insert messy: (stage_norm - none) / (plpgsql - none)', '<=', 0.05, 'added', true),
      (8, 'c) insert canonical: stage_norm / none', '<=', 1.10, 'dist_trigger_canonical/stage_norm:dist_trigger_canonical/none', true)),
c AS (
    SELECT d.n, d.label, d.op, d.target,
           bench.dist_check_value(x.j, d.f) AS medians,
           CASE WHEN d.paired THEN
               (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY bench.dist_check_value(r.j, d.f)) FROM r) END AS paired
      FROM def d, x)
SELECT n AS "#", label AS "target", op || ' ' || target AS "wanted",
       round(medians::numeric, 3) AS medians, round(paired::numeric, 3) AS paired,
       CASE WHEN coalesce(paired, medians) IS NULL THEN '?'
            WHEN (op = '>=' AND coalesce(paired, medians) >= target)
              OR (op = '<=' AND coalesce(paired, medians) <= target) THEN 'met'
            ELSE 'NOT MET' END AS "result (paired, else medians)"
  FROM c;
TABLE dist_checks ORDER BY 1;

-- Does reading jsonb in its binary form matter? The least a text round trip would add per call
-- (jsonb_out then jsonb_in of the same 5-key document, no rule applied), next to the whole of
-- normalize_stage_distribution: 5 interleaved runs each over bench.dist_n, medians per call.
DO $$
DECLARE r int; n bigint := (SELECT count(*) FROM bench.dist_n);
BEGIN
    FOR r IN 1..5 LOOP
        INSERT INTO bench.runs VALUES ('dist_roundtrip', 'stage_norm', r,
            bench.time_ms('SELECT count(stage_norm.normalize_stage_distribution(d)) FROM bench.dist_n'));
        INSERT INTO bench.runs VALUES ('dist_roundtrip', 'text_roundtrip_only', r,
            bench.time_ms('SELECT count((d::text)::jsonb) FROM bench.dist_n'));
        INSERT INTO bench.runs VALUES ('dist_roundtrip', 'baseline', r,
            bench.time_ms('SELECT count(d) FROM bench.dist_n'));
    END LOOP;
END $$;
\echo 'binary form vs a text round trip (per call, us; baseline = count(d)):'
SELECT variant, round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) * 1000 / (SELECT count(*) FROM bench.dist_n))::numeric, 3) AS per_call_us
  FROM bench.runs WHERE suite = 'dist_roundtrip' GROUP BY variant ORDER BY 2;

-- Machine-readable lines (bench/lib.sql) for bench/report.js; check keys d1..d8 (d8 is also
-- measured in instructions by VARIANTS="startup j_none j_canonical" bench/callgrind.sh).
\pset format unaligned
\pset tuples_only on
SELECT bench.result_line('title', 'distributions', 'dist_call',
       format('normalize_stage_distribution on a 5-key messy distribution: %s calls in one statement (us per call)', :dist_calls));
SELECT bench.result_lines('distributions', 'dist_call', ARRAY['plpgsql'], 1000.0 / :dist_calls, 'us/call');
SELECT bench.result_line('title', 'distributions', 'dist_batch',
       'normalize_stage_distribution per call, batches of 100 calls: p50 and p99 of the batches (us per call)');
SELECT bench.result_line('median', 'distributions', 'dist_batch', variant || ' ' || p,
                         round((v / 100)::numeric, 4)::text, 'us/call', n::text)
  FROM (SELECT variant, count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY us) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY us) AS p99
          FROM bench.batch_us WHERE suite = 'dist_batch' GROUP BY variant) b,
       LATERAL (VALUES ('p50', b.p50), ('p99', b.p99)) x(p, v)
 ORDER BY v;
SELECT bench.result_line('title', 'distributions', 'stages_call',
       format('normalize_stages on a 5,000-element array of messy labels: %s calls in one statement (us per call)', :stages_calls));
SELECT bench.result_lines('distributions', 'stages_call', ARRAY['plpgsql'], 1000.0 / :stages_calls, 'us/call');
SELECT bench.result_line('title', 'distributions', 'dist_trigger_messy',
       format('INSERT ... SELECT of %s distributions (5 keys, 3 in 4 rows messy) through the trigger, enforce (ms)', :rows));
SELECT bench.result_lines('distributions', 'dist_trigger_messy', ARRAY['none', 'plpgsql']);
SELECT bench.result_line('title', 'distributions', 'dist_trigger_canonical',
       format('INSERT ... SELECT of %s distributions, all canonical (ms)', :rows));
SELECT bench.result_lines('distributions', 'dist_trigger_canonical', ARRAY['none']);
SELECT bench.result_line('title', 'distributions', 'dist_roundtrip',
       'binary form vs a text round trip d::text::jsonb, 5 runs (us per call)');
SELECT bench.result_lines('distributions', 'dist_roundtrip', ARRAY['stage_norm'],
                          1000.0 / (SELECT count(*) FROM bench.dist_n), 'us/call');
SELECT bench.result_line('check', 'distributions', 'd' || "#", "target", split_part(wanted, ' ', 1), split_part(wanted, ' ', 2),
                         medians::text, paired::text, "result (paired, else medians)")
  FROM dist_checks ORDER BY "#";
\pset format aligned
\pset tuples_only off
