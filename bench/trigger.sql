-- Issue: the write path. INSERT ... SELECT of bench.rows (default 1,000,000) known messy ASCII
-- labels (3 in 4 need a rewrite) into a table with a primary key, through stage_norm's trigger
-- and through peers (no trigger, contrib's insert_username and lo_manage, a PL/pgSQL trigger);
-- and an UPDATE of a non-governed column of every row. Medians of interleaved rounds whose
-- variant order rotates every round; the ceilings of the issue are printed at the end (reported,
-- not enforced).
--
-- Every statement of the plan runs at top level (psql \gexec, autocommit), so that TRUNCATE,
-- VACUUM and CHECKPOINT stay outside the timed statement, and nothing piles up in one
-- transaction. Per round: CHECKPOINT; then for each INSERT variant: TRUNCATE its table, SET the
-- stage_norm GUCs, time the INSERT; then for each UPDATE variant: reload its table from
-- bench.src with triggers suppressed (session_replication_role = replica), VACUUM ANALYZE it,
-- SET the GUCs, time the UPDATE. So every timed INSERT goes into an empty table and every timed
-- UPDATE starts from the same freshly loaded, vacuumed table (no bloat carried between rounds).
-- Round 0 is a warm-up and is not recorded. Autovacuum is off on every bench table.
SET max_parallel_workers_per_gather = 0;  -- per-core cost, less noise
SET client_min_messages = warning;
\ir peers.sql
SELECT coalesce(nullif(current_setting('bench.rows', true), ''), '1000000')::int AS rows \gset

-- n known ASCII labels, 15 of every 20 non-canonical (all known to the built-in rules):
-- 3 in 4 rows need a rewrite, 1 in 4 is already canonical.
CREATE OR REPLACE FUNCTION bench.known_labels(n int)
RETURNS TABLE (id bigint, stage text) LANGUAGE sql AS $$
    SELECT i::bigint,
           (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series D', 'Seed Round', 'seed',
                  'series-a', 'PRE-SEED', 'Series C Plus', 'series b2', 'Series A-2 Round',
                  'series-c+', 'Pre Seed', 'SERIES B', 'series a', 'Series E', 'pre-seed',
                  'seed round', 'series-b', 'Series C+'])[1 + (i * 7) % 20]
      FROM generate_series(1, n) i;
$$;

DROP TABLE IF EXISTS bench.src;
CREATE TABLE bench.src WITH (autovacuum_enabled = false) AS SELECT * FROM bench.known_labels(:rows);
VACUUM ANALYZE bench.src;

-- INSERT tables (id bigint PRIMARY KEY, stage text), one per variant with its own trigger.
DO $$
DECLARE t text;
BEGIN
    IF to_regclass('bench.ti_override') IS NOT NULL THEN
        PERFORM stage_norm.set_table_mode('bench.ti_override', NULL);
    END IF;
    FOREACH t IN ARRAY ARRAY['none', 'enforce', 'override', 'off', 'insert_username', 'plpgsql', 'lo_manage'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS bench.%I', 'ti_' || t);
        EXECUTE format('CREATE TABLE bench.%I (id bigint PRIMARY KEY, stage text) WITH (autovacuum_enabled = false)', 'ti_' || t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['none', 'enforce', 'lo_manage'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS bench.%I', 'tu_' || t);
        EXECUTE format('CREATE TABLE bench.%I (id bigint PRIMARY KEY, stage text, n int NOT NULL) WITH (autovacuum_enabled = false)', 'tu_' || t);
    END LOOP;
END $$;
DO $$
BEGIN
    PERFORM stage_norm.attach('bench.ti_enforce', 'stage');
    PERFORM stage_norm.attach('bench.ti_override', 'stage');
    PERFORM stage_norm.attach('bench.ti_off', 'stage');
    PERFORM stage_norm.attach('bench.tu_enforce', 'stage');
    PERFORM stage_norm.set_table_mode('bench.ti_override', 'enforce');
END $$;
CREATE TRIGGER insert_username BEFORE INSERT OR UPDATE ON bench.ti_insert_username
    FOR EACH ROW EXECUTE FUNCTION insert_username(stage);
CREATE TRIGGER plpgsql_normalize BEFORE INSERT OR UPDATE ON bench.ti_plpgsql
    FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_normalize_stage();
CREATE TRIGGER lo_manage BEFORE INSERT OR UPDATE ON bench.ti_lo_manage
    FOR EACH ROW EXECUTE FUNCTION lo_manage(stage);
CREATE TRIGGER lo_manage BEFORE INSERT OR UPDATE ON bench.tu_lo_manage
    FOR EACH ROW EXECUTE FUNCTION lo_manage(stage);

-- The plan: one statement per row, run in order by \gexec.
-- Variant: name, table, stage_norm.mode, stage_norm.enforce_percent for that variant.
CREATE OR REPLACE FUNCTION bench.trigger_plan(rounds int)
RETURNS TABLE (seq int, stmt text) LANGUAGE plpgsql AS $$
DECLARE
    iv text[] := ARRAY['none', 'enforce', 'enforce_override_p10', 'off', 'insert_username', 'plpgsql', 'lo_manage'];
    it text[] := ARRAY['ti_none', 'ti_enforce', 'ti_override', 'ti_off', 'ti_insert_username', 'ti_plpgsql', 'ti_lo_manage'];
    im text[] := ARRAY['enforce', 'enforce', 'warn', 'off', 'enforce', 'enforce', 'enforce'];
    ip int[]  := ARRAY[100, 100, 10, 100, 100, 100, 100];
    uv text[] := ARRAY['none', 'enforce', 'lo_manage'];
    ut text[] := ARRAY['tu_none', 'tu_enforce', 'tu_lo_manage'];
    r int; j int; k int;
BEGIN
    seq := 0;
    FOR r IN 0..rounds LOOP
        seq := seq + 1; stmt := 'CHECKPOINT'; RETURN NEXT;
        FOR j IN 0..cardinality(iv) - 1 LOOP
            k := 1 + (r + j) % cardinality(iv);
            FOREACH stmt IN ARRAY ARRAY[
                format('TRUNCATE bench.%I', it[k]),
                format('SET stage_norm.mode = %L', im[k]),
                format('SET stage_norm.enforce_percent = %s', ip[k]),
                format('INSERT INTO bench.runs VALUES (%L, %L, %s, bench.time_ms(%L))', 'trigger_insert', iv[k], r,
                       format('INSERT INTO bench.%I SELECT id, stage FROM bench.src', it[k]))] LOOP
                seq := seq + 1; RETURN NEXT;
            END LOOP;
        END LOOP;
        FOR j IN 0..cardinality(uv) - 1 LOOP
            k := 1 + (r + j) % cardinality(uv);
            FOREACH stmt IN ARRAY ARRAY[
                format('TRUNCATE bench.%I', ut[k]),
                'SET session_replication_role = replica',
                format('INSERT INTO bench.%I SELECT id, stage, 0 FROM bench.src', ut[k]),
                'RESET session_replication_role',
                format('VACUUM ANALYZE bench.%I', ut[k]),
                'SET stage_norm.mode = enforce',
                'SET stage_norm.enforce_percent = 100',
                format('INSERT INTO bench.runs VALUES (%L, %L, %s, bench.time_ms(%L))', 'trigger_update', uv[k], r,
                       format('UPDATE bench.%I SET n = n + 1', ut[k]))] LOOP
                seq := seq + 1; RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;

-- A check's value from timings keyed 'suite/variant': 'a:b' is a/b; 'excess' is enforce's time
-- over no trigger as a share of the PL/pgSQL trigger's.
CREATE OR REPLACE FUNCTION bench.check_value(j jsonb, f text) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN f = 'excess' THEN
                ((j->>'trigger_insert/enforce')::float8 - (j->>'trigger_insert/none')::float8)
                / nullif((j->>'trigger_insert/plpgsql')::float8 - (j->>'trigger_insert/none')::float8, 0)
           ELSE (j->>split_part(f, ':', 1))::float8 / nullif((j->>split_part(f, ':', 2))::float8, 0) END
$$;

DELETE FROM bench.runs WHERE suite LIKE 'trigger%';
SET stage_norm.max_mode = enforce;
SELECT stmt FROM bench.trigger_plan(current_setting('bench.rounds')::int) ORDER BY seq \gexec
DELETE FROM bench.runs WHERE suite LIKE 'trigger%' AND round = 0;  -- warm-up

\echo :rows 'known ASCII labels, 3 in 4 needing a rewrite; INSERT ... SELECT into an empty table with a primary key (ratio to no trigger):'
SELECT * FROM bench.report('trigger_insert', 'none');
\echo 'UPDATE t SET n = n + 1 on' :rows 'rows, n not governed (ratio to no trigger):'
SELECT * FROM bench.report('trigger_update', 'none');
\echo 'spread over the rounds (ms), to judge the noise:'
SELECT suite, variant, round(min(ms)::numeric, 1) AS min_ms, round(max(ms)::numeric, 1) AS max_ms,
       round(((max(ms) - min(ms)) / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS range_over_median
  FROM bench.runs WHERE suite LIKE 'trigger_%' GROUP BY suite, variant ORDER BY suite, min(ms);

-- The tables hold the last round's rows: did every variant do its job?
\echo 'sanity (last round):'
SET stage_norm.mode = warn;
SELECT (SELECT count(*) FROM bench.src) AS rows,
       (SELECT round(avg((NOT stage_norm.is_canonical_stage(stage))::int), 3) FROM bench.src) AS share_needing_rewrite,
       (SELECT count(*) FROM bench.src WHERE stage_norm.normalize_stage_builtin(stage) IS NULL) AS unknown_labels,
       (SELECT count(*) FROM stage_norm.aliases) AS aliases,
       (SELECT count(*) FILTER (WHERE e.stage IS DISTINCT FROM stage_norm.normalize_stage_builtin(s.stage))
          FROM bench.src s LEFT JOIN bench.ti_enforce e USING (id)) AS enforce_wrong,
       (SELECT count(*) FILTER (WHERE o.stage IS DISTINCT FROM stage_norm.normalize_stage_builtin(s.stage))
          FROM bench.src s LEFT JOIN bench.ti_override o USING (id)) AS override_wrong,
       (SELECT count(*) FILTER (WHERE p.stage IS DISTINCT FROM stage_norm.normalize_stage_builtin(s.stage))
          FROM bench.src s LEFT JOIN bench.ti_plpgsql p USING (id)) AS plpgsql_wrong,
       (SELECT count(*) FILTER (WHERE f.stage IS DISTINCT FROM s.stage)
          FROM bench.src s LEFT JOIN bench.ti_off f USING (id)) AS off_changed,
       (SELECT count(*) FILTER (WHERE stage IS DISTINCT FROM current_user::text) FROM bench.ti_insert_username) AS insert_username_wrong,
       (SELECT count(*) FILTER (WHERE u.n IS DISTINCT FROM 1 OR u.stage IS DISTINCT FROM s.stage)
          FROM bench.src s LEFT JOIN bench.tu_enforce u USING (id)) AS update_enforce_wrong,
       stage_norm.effective_mode('bench.ti_override') AS override_mode_under_warn;
RESET stage_norm.mode;
RESET stage_norm.enforce_percent;

\echo 'checks (ceilings from the issue). "medians": ratio of the variants'' medians; "paired": median over'
\echo 'the rounds of the ratio within each round (the variants of a round run back to back, so a slow'
\echo 'stretch of this shared machine weighs on both sides of a paired ratio):'
CREATE TEMP TABLE trigger_checks AS
WITH m AS (
    SELECT suite || '/' || variant AS v, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med
      FROM bench.runs WHERE suite LIKE 'trigger_%' GROUP BY suite, variant),
x AS (SELECT jsonb_object_agg(v, med) AS j FROM m),
r AS (SELECT round, jsonb_object_agg(suite || '/' || variant, ms) AS j
        FROM bench.runs WHERE suite LIKE 'trigger_%' GROUP BY round),
def (n, label, op, ceiling, f) AS (VALUES
      (1, 'insert: enforce / none', '<=', 1.10, 'trigger_insert/enforce:trigger_insert/none'),
      (2, 'insert: enforce / insert_username', '<', 1.00, 'trigger_insert/enforce:trigger_insert/insert_username'),
      (3, 'insert: (enforce - none) / (plpgsql - none)', '<=', 0.05, 'excess'),
      (4, 'insert: off / lo_manage', '<=', 1.05, 'trigger_insert/off:trigger_insert/lo_manage'),
      (5, 'insert: override enforce + enforce_percent 10 / enforce', '<=', 1.02, 'trigger_insert/enforce_override_p10:trigger_insert/enforce'),
      (6, 'update non-governed column: enforce / lo_manage', '<=', 1.05, 'trigger_update/enforce:trigger_update/lo_manage')),
c AS (
    SELECT d.n, d.label, d.op, d.ceiling,
           bench.check_value(x.j, d.f) AS medians,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY bench.check_value(r.j, d.f)) FROM r) AS paired
      FROM def d, x)
SELECT n AS "#", label AS "check", op || ' ' || ceiling AS ceiling,
       round(medians::numeric, 3) AS medians, round(paired::numeric, 3) AS paired,
       CASE WHEN paired IS NULL THEN '?'
            WHEN (op = '<' AND paired < ceiling) OR (op = '<=' AND paired <= ceiling) THEN 'pass'
            ELSE 'FAIL' END AS "result (paired)"
  FROM c;
TABLE trigger_checks ORDER BY 1;

-- Machine-readable lines (bench/lib.sql) for bench/report.js; check keys t1..t6 are
-- bench/callgrind.sh's checks 1..6.
\pset format unaligned
\pset tuples_only on
SELECT bench.result_line('title', 'trigger', 'trigger_insert',
       format('INSERT ... SELECT of %s known ASCII labels (3 in 4 rewritten) into an empty table with a primary key (ms)', :rows));
SELECT bench.result_lines('trigger', 'trigger_insert', ARRAY['none', 'lo_manage', 'insert_username', 'plpgsql']);
SELECT bench.result_line('title', 'trigger', 'trigger_update',
       format('UPDATE t SET n = n + 1 on %s rows, n not governed (ms)', :rows));
SELECT bench.result_lines('trigger', 'trigger_update', ARRAY['none', 'lo_manage']);
SELECT bench.result_line('check', 'trigger', 't' || "#", "check", split_part(ceiling, ' ', 1), split_part(ceiling, ' ', 2),
                         medians::text, paired::text, "result (paired)")
  FROM trigger_checks ORDER BY "#";
\pset format aligned
\pset tuples_only off
