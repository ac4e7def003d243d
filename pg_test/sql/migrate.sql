-- stage_norm.migrate, rollback_migration, purge_migration_undo, verify, assert_verified.
-- NOTICEs carry durations and ETAs: silenced here, asserted by the client tests.
SET client_min_messages = warning;

CREATE TABLE pc (id int PRIMARY KEY, stage text);
INSERT INTO pc SELECT i, (ARRAY['Series A ', 'pre_seed', 'seed', NULL, 'growth', 'seriesB', 'series-a'])[1 + i % 7]
  FROM generate_series(1, 40) i;
CREATE TABLE pc_orig AS SELECT * FROM pc;
SELECT stage_norm.attach('pc', 'stage');
SET stage_norm.mode = enforce;   -- migrate's own UPDATEs pass through the trigger

CALL stage_norm.migrate('pc', 'stage', batch_size => 7);
SELECT stage, count(*) FROM pc GROUP BY 1 ORDER BY 1;
SELECT run_id, table_name, column_name, column_kind, key_columns, status, rows_before, rows_after, nulls_before, nulls_after,
       rows_scanned, rows_updated, rows_unknown, batches, lock_retries, pid, cursor_key
  FROM stage_norm.migration_runs;
SELECT batch, key_from, key_to, rows_scanned, rows_updated, attempts, status
  FROM stage_norm.migration_batches ORDER BY batch;
SELECT count(*) AS undo_rows, sum(cardinality(old_values)) AS undo_values,
       (SELECT count(DISTINCT k) FROM stage_norm.migration_undo, unnest(keys) k WHERE run_id = 1) AS keys
  FROM stage_norm.migration_undo WHERE run_id = 1;
SELECT * FROM stage_norm.migration_progress;

-- A second run updates nothing.
CALL stage_norm.migrate('pc', 'stage', batch_size => 7);
SELECT run_id, status, rows_scanned, rows_updated, rows_unknown FROM stage_norm.migration_runs ORDER BY run_id;

-- The verifier, and its CI gate (the unknown 'growth' remains).
SELECT v - 'last_run' AS report, v->'last_run'->'row_count_unchanged' AS same_rows, v->'last_run'->'no_null_introduced' AS no_null
  FROM stage_norm.verify('pc', 'stage') v;
DO $$
DECLARE st text; tab text; col text; det text;
BEGIN
    PERFORM stage_norm.assert_verified('pc', 'stage');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, tab = TABLE_NAME, col = COLUMN_NAME, det = PG_EXCEPTION_DETAIL;
    RAISE WARNING 'sqlstate %, table %, column %, detail has top values: %', st, tab, col, (det::jsonb->'top_non_canonical');
END $$;

-- Rollback: every original value back, except a row changed since the run (left, reported).
UPDATE pc SET stage = 'series-b' WHERE id = 1;      -- was 'pre_seed', migrated to 'pre-seed'
CALL stage_norm.rollback_migration(1, batch_size => 5);
SELECT id, o.stage AS original, p.stage AS now FROM pc p JOIN pc_orig o USING (id)
 WHERE p.stage IS DISTINCT FROM o.stage ORDER BY id;
SELECT run_id, status, rows_restored, rows_conflicting FROM stage_norm.migration_runs WHERE run_id = 1;
SELECT count(*) AS undo_left FROM stage_norm.migration_undo WHERE run_id = 1;
-- A run rolled back is not resumed: the next call starts a new one.
CALL stage_norm.migrate('pc', 'stage');
SELECT run_id, status, rows_updated FROM stage_norm.migration_runs ORDER BY run_id;
SELECT stage_norm.purge_migration_undo(run_id => 3);
SELECT stage_norm.purge_migration_undo(older_than => '0 seconds');
SELECT count(*) FROM stage_norm.migration_undo;

-- max_batches: a bounded window, then the rest; composite text + uuid key.
CREATE TABLE pk2 (fund text, id uuid, stage varchar(20), PRIMARY KEY (fund, id));
INSERT INTO pk2 SELECT 'fund-' || (i % 3), ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid,
                       (ARRAY['Series A ', 'pre_seed', 'seed'])[1 + i % 3]
  FROM generate_series(1, 25) i;
CALL stage_norm.migrate('pk2', 'stage', batch_size => 4, max_batches => 2);
SELECT status, batches, rows_scanned, rows_updated, cursor_key FROM stage_norm.migration_runs WHERE table_name = 'pk2';
SELECT count(*) FILTER (WHERE stage_norm.is_canonical_stage(stage)) AS canonical FROM pk2;
CALL stage_norm.migrate('pk2', 'stage', batch_size => 4);
SELECT status, batches, rows_scanned, rows_updated, rows_before, rows_after FROM stage_norm.migration_runs WHERE table_name = 'pk2';
SELECT stage, count(*) FROM pk2 GROUP BY 1 ORDER BY 1;
SELECT (stage_norm.assert_verified('pk2', 'stage'))->'stages';

-- A partitioned table: partition by partition.
CREATE TABLE pp (region text, id bigint, stage text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE pp_eu PARTITION OF pp FOR VALUES IN ('eu');
CREATE TABLE pp_us PARTITION OF pp FOR VALUES IN ('us');
INSERT INTO pp SELECT (ARRAY['eu', 'us'])[1 + i % 2], i, (ARRAY['Seed Round', 'SERIES B', 'series c+'])[1 + i % 3]
  FROM generate_series(1, 30) i;
CALL stage_norm.migrate('pp', 'stage', batch_size => 4, max_batches => 5);
SELECT status, batches, rows_updated FROM stage_norm.migration_runs WHERE table_name = 'pp';
CALL stage_norm.migrate('pp', 'stage', batch_size => 4);
SELECT status, batches, rows_scanned, rows_updated, rows_before, rows_after FROM stage_norm.migration_runs WHERE table_name = 'pp';
SELECT b.relid::regclass AS part, count(*) AS batches, sum(b.rows_updated) AS updated
  FROM stage_norm.migration_batches b JOIN stage_norm.migration_runs r USING (run_id)
 WHERE r.table_name = 'pp' GROUP BY 1 ORDER BY 1;
SELECT stage, count(*) FROM pp GROUP BY 1 ORDER BY 1;

-- jsonb distributions and stage arrays: invalid ones and unknown elements are left alone.
CREATE TABLE kinds (id int PRIMARY KEY, alloc jsonb, path text[]);
INSERT INTO kinds VALUES
  (1, '{"Seed Round": 0.5, "seed": 0.5}', '{Seed,"series a"}'),
  (2, '{"seed": 1}', '{seed}'),
  (3, '{"growth": 1}', '{seed,growth}'),
  (4, '{"seed": 0.5}', '{NULL,pre_seed}'),
  (5, NULL, NULL);
CREATE TABLE kinds_orig AS SELECT * FROM kinds;
CALL stage_norm.migrate('kinds', 'alloc');
CALL stage_norm.migrate('kinds', 'path');
SELECT * FROM kinds ORDER BY id;
SELECT column_name, column_kind, rows_updated, rows_unknown FROM stage_norm.migration_runs WHERE table_name = 'kinds' ORDER BY run_id;
SELECT v->'non_canonical' AS non_canonical, v->'stages' AS stages, v->'invalid_reasons' AS reasons
  FROM stage_norm.verify('kinds', 'alloc') v;
SELECT v->'non_canonical' AS non_canonical, v->'stages' AS stages, v->'top_non_canonical' AS top
  FROM stage_norm.verify('kinds', 'path') v;
SELECT max(run_id) FILTER (WHERE column_name = 'alloc') AS run_alloc, max(run_id) FILTER (WHERE column_name = 'path') AS run_path
  FROM stage_norm.migration_runs WHERE table_name = 'kinds' \gset
CALL stage_norm.rollback_migration(:run_alloc);
CALL stage_norm.rollback_migration(:run_path);
SELECT count(*) AS differ FROM kinds k JOIN kinds_orig o USING (id)
 WHERE k.alloc IS DISTINCT FROM o.alloc OR k.path::text IS DISTINCT FROM o.path::text;

-- Per tenant.
SELECT jsonb_pretty(v->'tenants') FROM stage_norm.verify('pk2', 'stage', tenant => 'fund') v;

-- Tenant by tenant (tenant => 'fund_id'): batches never mix funds, the NULL fund comes last,
-- a run resumes the way it started (in the middle of a fund and at a fund's end), and the
-- figures are per fund.
CREATE TABLE tn (id bigint PRIMARY KEY, fund_id int, stage text);
CREATE INDEX ON tn (fund_id, id);
INSERT INTO tn SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3 END, (ARRAY['Series A ', 'pre_seed', 'seed', 'growth'])[1 + i % 4]
  FROM generate_series(1, 40) i;
CREATE TABLE tn_orig AS SELECT * FROM tn;
CALL stage_norm.migrate('tn', 'stage', batch_size => 5, max_batches => 3, tenant => 'fund_id');
SELECT status, tenant_column, batches, cursor_tenant, cursor_key FROM stage_norm.migration_runs WHERE table_name = 'tn';
CALL stage_norm.migrate('tn', 'stage', batch_size => 5, max_batches => 1);
SELECT status, batches, cursor_tenant, cursor_key FROM stage_norm.migration_runs WHERE table_name = 'tn';
CALL stage_norm.migrate('tn', 'stage', batch_size => 5, tenant => 'fund_id');
SELECT status, batches, rows_scanned, rows_updated, rows_unknown, rows_before, rows_after FROM stage_norm.migration_runs WHERE table_name = 'tn';
SELECT b.batch, b.tenant, b.key_from, b.key_to, b.rows_scanned, b.rows_updated
  FROM stage_norm.migration_batches b JOIN stage_norm.migration_runs r USING (run_id) WHERE r.table_name = 'tn' ORDER BY b.batch;
-- every row lies in exactly one batch of its own fund, and the batches' counts are the funds'
SELECT count(*) AS rows, count(*) FILTER (WHERE n <> 1) AS not_in_one_batch
  FROM (SELECT t.id, count(b.batch) AS n
          FROM tn t LEFT JOIN (stage_norm.migration_batches b JOIN stage_norm.migration_runs r USING (run_id))
            ON r.table_name = 'tn' AND b.tenant IS NOT DISTINCT FROM t.fund_id::text
           AND (b.key_from IS NULL OR t.id > b.key_from[1]::bigint) AND (b.key_to IS NULL OR t.id <= b.key_to[1]::bigint)
         GROUP BY t.id) x;
SELECT f.fund, f.n, p.rows_scanned FROM (SELECT coalesce(fund_id::text, '-') AS fund, count(*) AS n FROM tn GROUP BY 1) f
  FULL JOIN (SELECT coalesce(tenant, '-') AS fund, rows_scanned FROM stage_norm.migration_tenant_progress WHERE table_name = 'tn') p USING (fund)
 WHERE f.n IS DISTINCT FROM p.rows_scanned;
SELECT tenant, batches, rows_scanned, rows_updated, in_progress
  FROM stage_norm.migration_tenant_progress WHERE table_name = 'tn' ORDER BY tenant NULLS LAST;
SELECT jsonb_pretty(v->'tenants') FROM stage_norm.verify('tn', 'stage', tenant => 'fund_id') v;
SELECT run_id AS run_tn FROM stage_norm.migration_runs WHERE table_name = 'tn' \gset
CALL stage_norm.rollback_migration(:run_tn);
SELECT count(*) AS differ FROM tn JOIN tn_orig o USING (id) WHERE tn.stage IS DISTINCT FROM o.stage;

-- Keys kept as text do not depend on the session: a timestamptz key migrated under one
-- DateStyle, resumed and rolled back under others.
CREATE TABLE ev (at timestamptz PRIMARY KEY, stage text);
INSERT INTO ev SELECT timestamptz '2026-01-01 00:00+00' + i * interval '1 day', (ARRAY['Seed', 'seed', 'Series A'])[1 + i % 3]
  FROM generate_series(0, 19) i;
CREATE TABLE ev_orig AS SELECT * FROM ev;
SET datestyle = 'SQL, DMY';
CALL stage_norm.migrate('ev', 'stage', batch_size => 5, max_batches => 1);
SET datestyle = 'SQL, MDY';
CALL stage_norm.migrate('ev', 'stage', batch_size => 5);
SELECT count(*) FILTER (WHERE NOT stage_norm.is_canonical_stage(stage)) AS left_over FROM ev;
SELECT run_id AS run_ev FROM stage_norm.migration_runs WHERE table_name = 'ev' \gset
SET datestyle = 'ISO, MDY';
CALL stage_norm.rollback_migration(:run_ev);
SELECT count(*) AS differ FROM ev JOIN ev_orig o USING (at) WHERE ev.stage IS DISTINCT FROM o.stage;
CALL stage_norm.rollback_migration(:run_ev);   -- again: a NOTICE, nothing done
RESET datestyle;

-- Refusals (CONTEXT lines, which carry PL/pgSQL line numbers, hidden).
\set SHOW_CONTEXT never
SET client_min_messages = notice;
CREATE TABLE nopk (stage text);
CALL stage_norm.migrate('nopk', 'stage');
BEGIN;
CALL stage_norm.migrate('pc', 'stage');
ROLLBACK;
CALL stage_norm.migrate('pc', 'nope');
CALL stage_norm.migrate('pc', 'stage', batch_size => 0);
CALL stage_norm.migrate('pc', 'stage', tenant => 'nope');
CALL stage_norm.migrate('pc', 'stage', tenant => 'stage');
-- an unfinished run resumes the way it started
SET client_min_messages = warning;
CALL stage_norm.migrate('tn', 'stage', batch_size => 5, max_batches => 1, tenant => 'fund_id');
SET client_min_messages = notice;
CALL stage_norm.migrate('tn', 'stage', tenant => 'id');
-- an unfinished run's undo cannot be purged; a purged run cannot be rolled back
SELECT max(run_id) AS run_tn2 FROM stage_norm.migration_runs WHERE table_name = 'tn' \gset
SELECT stage_norm.purge_migration_undo(run_id => :run_tn2);
SET client_min_messages = warning;
CALL stage_norm.migrate('tn', 'stage', batch_size => 5, tenant => 'fund_id');
SET client_min_messages = notice;
SELECT stage_norm.purge_migration_undo(run_id => :run_tn2) > 0 AS purged;
CALL stage_norm.rollback_migration(:run_tn2);
CALL stage_norm.rollback_migration(999);
SELECT stage_norm.purge_migration_undo();
CREATE ROLE migrate_reader;
GRANT SELECT ON pc TO migrate_reader;
SET ROLE migrate_reader;
CALL stage_norm.migrate('pc', 'stage');
RESET ROLE;
REVOKE ALL ON pc FROM migrate_reader;
DROP ROLE migrate_reader;
SELECT stage_norm.verify('pc', 'id');

-- A rollback restores a row only when what it holds is what migrate makes of its original under
-- the current aliases and stage set (it writes past enforcement). After the alias a run used is
-- removed, that row is left with its undo data and the run stays unfinished; with the alias
-- back, the same call restores it. Purging a run nobody can see is an error.
CREATE TABLE ra (id int PRIMARY KEY, stage text);
INSERT INTO ra VALUES (1, 'Angel'), (2, 'seriesB'), (3, 'Seed Round');
SELECT stage_norm.add_alias('Angel', 'pre-seed');
SET client_min_messages = warning;
CALL stage_norm.migrate('ra', 'stage');
SELECT max(run_id) AS run_ra FROM stage_norm.migration_runs WHERE relid = 'ra'::regclass \gset
SELECT stage_norm.remove_alias('Angel');
\set VERBOSITY terse
CALL stage_norm.rollback_migration(:run_ra);
\set VERBOSITY default
SELECT id, stage FROM ra ORDER BY id;
SELECT status, rows_restored, rows_conflicting, (SELECT count(*) FROM stage_norm.migration_undo u WHERE u.run_id = r.run_id) AS undo_rows
  FROM stage_norm.migration_runs r WHERE run_id = :run_ra;
SELECT stage_norm.add_alias('Angel', 'pre-seed');
CALL stage_norm.rollback_migration(:run_ra);
RESET client_min_messages;
SELECT id, stage FROM ra ORDER BY id;
SELECT status, rows_restored, rows_conflicting, (SELECT count(*) FROM stage_norm.migration_undo u WHERE u.run_id = r.run_id) AS undo_rows
  FROM stage_norm.migration_runs r WHERE run_id = :run_ra;
SELECT stage_norm.remove_alias('Angel');
SELECT stage_norm.purge_migration_undo(run_id => 999999);
-- A role with rights on a partitioned table's parent only: refused up front, the partitions
-- named (migrate updates each leaf itself, and PostgreSQL checks the table a statement names).
CREATE ROLE migrate_parent_only;
GRANT SELECT, UPDATE ON pp TO migrate_parent_only;
GRANT SELECT, INSERT, UPDATE ON stage_norm.migration_runs, stage_norm.migration_batches TO migrate_parent_only;
GRANT INSERT ON stage_norm.migration_undo TO migrate_parent_only;
SET ROLE migrate_parent_only;
CALL stage_norm.migrate('pp', 'stage');
RESET ROLE;
REVOKE ALL ON pp FROM migrate_parent_only;
REVOKE ALL ON stage_norm.migration_runs, stage_norm.migration_batches, stage_norm.migration_undo FROM migrate_parent_only;
DROP ROLE migrate_parent_only;

RESET stage_norm.mode;
DROP TABLE pc, pc_orig, pk2, pp, kinds, kinds_orig, nopk, tn, tn_orig, ev, ev_orig, ra;
DELETE FROM stage_norm.migration_runs;

-- The labels nobody knows (#28): what to alias before enforce. verify's top_non_canonical lists
-- the most frequent non-canonical values, which before a migration are known variants; an
-- unknown label used by a few rows does not make its top 20.
CREATE TABLE ul (id int PRIMARY KEY, fund int, stage text, stages text[], dist jsonb);
INSERT INTO ul SELECT g, g % 3, CASE WHEN g % 500 = 0 THEN 'Angel' WHEN g % 700 = 0 THEN 'Bridge' WHEN g % 97 = 0 THEN NULL ELSE 'Series A ' END,
                      ARRAY['seed', CASE WHEN g % 2 = 0 THEN 'Mezzanine' ELSE 'Seed Round' END],
                      CASE WHEN g % 3 = 0 THEN '{"Seed": 0.5, "Late": 0.5}' ELSE '{"seed": 1}' END::jsonb
  FROM generate_series(1, 3000) g;
SELECT jsonb_array_length(stage_norm.verify('ul', 'stage')->'top_non_canonical') AS top,
       stage_norm.verify('ul', 'stage')->'top_non_canonical'->0 AS first;
SELECT * FROM stage_norm.unknown_labels('ul', 'stage');
SELECT * FROM stage_norm.unknown_labels('ul', 'stage', tenant => 'fund');
SELECT * FROM stage_norm.unknown_labels('ul', 'stages');
SELECT * FROM stage_norm.unknown_labels('ul', 'dist');
SELECT stage_norm.add_alias('Angel', 'pre-seed');
SELECT * FROM stage_norm.unknown_labels('ul', 'stage');
SELECT stage_norm.remove_alias('Angel');
-- An alias onto what the rules already give is not stored: a NOTICE says so.
SELECT stage_norm.add_alias('Series-A', 'series-a');
SELECT stage_norm.add_alias('series-a', 'series-a');
SELECT count(*) AS aliases FROM stage_norm.aliases;
DROP TABLE ul;

-- rollback_migration once add_check's CHECK exists (#28): refused up front with what to do
-- (it failed in its first batch with 23514 and a 20-line context).
CREATE TABLE rb (id int PRIMARY KEY, stage text);
INSERT INTO rb SELECT g, (ARRAY['Series A ', 'pre_seed', 'seed'])[1 + g % 3] FROM generate_series(1, 30) g;
SET client_min_messages = warning;
CALL stage_norm.migrate('rb', 'stage');
CALL stage_norm.add_check('rb', 'stage');
RESET client_min_messages;
SELECT max(run_id) AS rb_run FROM stage_norm.migration_runs WHERE table_name = 'rb' \gset
CALL stage_norm.rollback_migration(:rb_run);
ALTER TABLE rb DROP CONSTRAINT stage_stage_canonical;
-- Every run of the column, newest first, in one call (a second run after the first finished
-- found nothing to change, and is left alone).
SET client_min_messages = warning;
CALL stage_norm.migrate('rb', 'stage');
RESET client_min_messages;
CALL stage_norm.rollback_column_migration('rb', 'stage');
SELECT run_id = :rb_run AS first_run, status, rows_updated FROM stage_norm.migration_runs WHERE table_name = 'rb' ORDER BY run_id;
SELECT stage, count(*) FROM rb GROUP BY 1 ORDER BY 1;
DROP TABLE rb;

-- One batch on its own (#30: migrate is a loop around stage_norm._migrate_batch): a run row made
-- by hand, two batches of 4 keys with undo, then the last one (to the end), each returning its
-- rows, rewrites and last key; the undo rows hold what was there.
CREATE TABLE mb (id int PRIMARY KEY, stage text);
INSERT INTO mb SELECT g, (ARRAY['Series A ', 'seed', 'pre_seed', 'Angel'])[1 + g % 4] FROM generate_series(1, 10) g;
INSERT INTO stage_norm.migration_runs (relid, table_name, column_name, column_kind, key_columns, batch_size, keep_undo)
VALUES ('mb', 'mb', 'stage', 'text', '{id}', 4, true) RETURNING run_id AS mb_run \gset
SELECT * FROM stage_norm._migrate_batch(:mb_run, 1, 'mb', NULL, NULL, 4);
SELECT * FROM stage_norm._migrate_batch(:mb_run, 2, 'mb', NULL, '{4}', 4);
SELECT * FROM stage_norm._migrate_batch(:mb_run, 3, 'mb', NULL, '{8}', 4);
SELECT id, stage FROM mb ORDER BY id;
SELECT batch, keys, old_values, new_values FROM stage_norm.migration_undo WHERE run_id = :mb_run ORDER BY batch;
-- Without undo: one UPDATE; the range again from the start finds nothing left to change.
UPDATE stage_norm.migration_runs SET keep_undo = false WHERE run_id = :mb_run;
SELECT * FROM stage_norm._migrate_batch(:mb_run, 4, 'mb', NULL, NULL, 100);
SELECT * FROM stage_norm._migrate_batch(0, 1, 'mb', NULL, NULL, 4);
DELETE FROM stage_norm.migration_runs WHERE run_id = :mb_run;
DROP TABLE mb;
