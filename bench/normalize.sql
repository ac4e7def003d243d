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
-- Leave the configuration as it was found.
SELECT stage_norm.remove_alias('Angel') IS NOT NULL AND stage_norm.remove_alias('Growth') IS NOT NULL AS removed \gset
\if :custom
SELECT stage_norm.reset_stages() IS NULL AS reset \gset
\endif
