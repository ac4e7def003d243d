-- Issue #2: SELECT count(normalize_stage(stage)) vs SELECT count(lower(stage)) over 1,000,000 rows.
-- Variants are interleaved and their order rotates every round. With psql variable `set` =
-- 'custom' (normalize_custom.sql), the same under a 7-stage set (issue #14).
\if :{?set}
\else
\set set default
\endif
SELECT :'set' = 'custom' AS custom \gset
SET max_parallel_workers_per_gather = 0;  -- per-core cost, less noise
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.labels_ascii, bench.labels_mixed;
CREATE TABLE bench.labels_ascii AS SELECT s AS stage FROM bench.messy_labels(1000000, false) s;
CREATE TABLE bench.labels_mixed AS SELECT s AS stage FROM bench.messy_labels(1000000, true) s;
VACUUM ANALYZE bench.labels_ascii;
VACUUM ANALYZE bench.labels_mixed;
\if :custom
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
SELECT stage_norm.add_alias('Angel', 'pre-seed') IS NOT NULL AS aliases_added \gset
\else
SELECT stage_norm.add_alias('Angel', 'pre-seed') IS NOT NULL AND stage_norm.add_alias('Growth', 'series-c+') IS NOT NULL AS aliases_added \gset
\endif
SELECT set_config('bench.suite', CASE WHEN :'custom'::boolean THEN 'normalize_custom_' ELSE 'normalize_' END, false) IS NOT NULL AS suite_set \gset
DELETE FROM bench.runs WHERE suite LIKE current_setting('bench.suite') || '%';
DO $$
DECLARE
    v text[] := ARRAY['lower', 'normalize_stage', 'normalize_stage_builtin', 'count_only'];
    q text[] := ARRAY['SELECT count(lower(stage)) FROM %s',
                      'SELECT count(stage_norm.normalize_stage(stage)) FROM %s',
                      'SELECT count(stage_norm.normalize_stage_builtin(stage)) FROM %s',
                      'SELECT count(stage) FROM %s'];
    t text;
    r int; k int; j int;
BEGIN
    FOREACH t IN ARRAY ARRAY['ascii', 'mixed'] LOOP
        PERFORM bench.time_ms(format(q[w], 'bench.labels_' || t)) FROM generate_series(1, 4) w;  -- warm up
        FOR r IN 1..current_setting('bench.rounds')::int LOOP
            FOR j IN 0..3 LOOP
                k := 1 + (r + j) % 4;
                INSERT INTO bench.runs VALUES (current_setting('bench.suite') || t, v[k], r,
                                               bench.time_ms(format(q[k], 'bench.labels_' || t)));
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
\echo 'stage set:' :set
\echo '1,000,000 ASCII labels (ratio to lower()):'
SELECT * FROM bench.report(current_setting('bench.suite') || 'ascii', 'lower');
\echo '1,000,000 labels, 1 in 10 non-ASCII (ratio to lower()):'
SELECT * FROM bench.report(current_setting('bench.suite') || 'mixed', 'lower');
-- Machine-readable lines (bench/lib.sql) for bench/report.js.
SELECT CASE WHEN :'custom'::boolean THEN 'normalize_custom' ELSE 'normalize' END AS result_suite,
       (SELECT count(*) FROM bench.labels_ascii) AS result_rows \gset
\pset format unaligned
\pset tuples_only on
SELECT bench.result_line('title', :'result_suite', current_setting('bench.suite') || 'ascii',
       format('SELECT count(f(stage)) over %s ASCII labels, stage set %s (ms)', :result_rows, :'set'));
SELECT bench.result_lines(:'result_suite', current_setting('bench.suite') || 'ascii', ARRAY['lower']);
SELECT bench.result_line('title', :'result_suite', current_setting('bench.suite') || 'mixed',
       format('SELECT count(f(stage)) over %s labels, 1 in 10 non-ASCII, stage set %s (ms)', :result_rows, :'set'));
SELECT bench.result_lines(:'result_suite', current_setting('bench.suite') || 'mixed', ARRAY['lower']);
-- Ceilings: #31, normalize_stage <= 0.6 x lower() on both label mixes (was: #14, 0.8 with ASCII
-- labels; #2, 1.5). Keys per stage set: bench/callgrind.sh's instruction counts (default set) are
-- the twins of the default set's.
SELECT bench.check_line(:'result_suite', format('n_%s_ascii', :'set'), format('normalize_stage / lower(), ASCII, %s set', :'set'), '<=', 0.6,
                        current_setting('bench.suite') || 'ascii', 'normalize_stage', 'lower');
SELECT bench.check_line(:'result_suite', format('n_%s_mixed', :'set'), format('normalize_stage / lower(), 1 in 10 non-ASCII, %s set', :'set'), '<=', 0.6,
                        current_setting('bench.suite') || 'mixed', 'normalize_stage', 'lower');
\pset format aligned
\pset tuples_only off
-- Leave the configuration as it was found.
SELECT stage_norm.remove_alias('Angel') IS NOT NULL AND stage_norm.remove_alias('Growth') IS NOT NULL AS removed \gset
\if :custom
SELECT stage_norm.reset_stages() IS NULL AS reset \gset
\endif
