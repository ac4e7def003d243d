-- Findings of the security review (#19) that are fixed, each with its attack.
SET client_min_messages = notice;
CREATE ROLE sec_attacker LOGIN;
CREATE SCHEMA atk AUTHORIZATION sec_attacker;
-- 1. The configuration is loaded as the bootstrap superuser (so that a writer without USAGE on
--    schema stage_norm can still use it). An operator of the attacker's that is an exact match
--    for a comparison in the load query would run with those rights, whatever the search_path:
--    the load's operators are written OPERATOR(pg_catalog.=) on operands of exactly its types.
SET ROLE sec_attacker;
CREATE TYPE atk.e1 AS ENUM ('a');
CREATE FUNCTION atk.pwn_eq(oid, regtype) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'attacker code ran as %', current_user;
    EXECUTE 'ALTER ROLE sec_attacker SUPERUSER';
    RETURN $1 OPERATOR(pg_catalog.=) $2::oid;
END $$;
CREATE OPERATOR atk.= (LEFTARG = oid, RIGHTARG = regtype, FUNCTION = atk.pwn_eq);
CREATE FUNCTION atk.pwn_eq4(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'attacker code ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR atk.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = atk.pwn_eq4);
RESET ROLE;
SELECT stage_norm.add_alias('sec round', 'seed');     -- makes every backend reload at its next use
SET ROLE sec_attacker;
SET search_path = atk, pg_catalog, public;            -- the attacker's operators first
SELECT stage_norm.normalize_stage('sec round') AS reloaded;
RESET search_path;
RESET ROLE;
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'sec_attacker';
SELECT stage_norm.remove_alias('sec round');
-- 5. The procedures migrate, rollback_migration and add_check cannot have a SET clause (they
--    COMMIT): they pin search_path = pg_catalog, pg_temp for each of their transactions, so an
--    operator of a user's that is an exact match for their regclass comparisons never runs, even
--    for a caller (here a superuser) whose search_path puts that schema first. The caller's path is
--    back afterwards.
SET ROLE sec_attacker;
CREATE FUNCTION atk.trojan(regclass, regclass) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'attacker code ran as %', current_user; RETURN $1::oid OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR atk.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = atk.trojan);
CREATE FUNCTION atk.trojan2(oid, regclass) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'attacker code ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR atk.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = atk.trojan2);
CREATE FUNCTION atk.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'attacker code ran as %', current_user; RETURN pg_catalog.quote_ident($1::text); END $$;
RESET ROLE;
CREATE TABLE sec_t (id int PRIMARY KEY, stage text);
INSERT INTO sec_t VALUES (1, 'Series A '), (2, 'pre_seed');
-- (their NOTICEs carry timings: only WARNINGs, which the attacker's code would raise, are shown)
SET client_min_messages = warning;
SET search_path = atk, public, pg_catalog;
CALL stage_norm.migrate('sec_t', 'stage');
SHOW search_path;
BEGIN;
CALL stage_norm.add_check('sec_t', 'stage', validate => false);
SHOW search_path;
COMMIT;
ALTER TABLE sec_t DROP CONSTRAINT stage_stage_canonical;   -- it would refuse the old values
-- (text = text: pg_catalog's own operator, safe under this path)
SELECT max(run_id) AS run FROM stage_norm.migration_runs WHERE table_name = 'sec_t' \gset
CALL stage_norm.rollback_migration(:run);
RESET search_path;
RESET client_min_messages;
SELECT id, stage FROM sec_t ORDER BY id;
DROP TABLE sec_t;
-- 3. set_stages re-checks, as the extension's owner, the CHECKs that depend on the set, and
--    prints the values that would fail. A CHECK on a field of a user's composite column passes
--    the "built-in code only" guard; the values were printed through a cast to text, which the
--    user's CREATE CAST ... WITH FUNCTION made their code, run as the owner. They are printed by
--    the type's output function now.
SET ROLE sec_attacker;
CREATE TYPE atk.holding AS (stage text);
CREATE FUNCTION atk.holding_text(atk.holding) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'attacker code ran as %', current_user;
    EXECUTE 'ALTER ROLE sec_attacker SUPERUSER';
    RETURN ($1).stage;
END $$;
CREATE CAST (atk.holding AS text) WITH FUNCTION atk.holding_text(atk.holding);
CREATE TABLE atk.h (id int, h atk.holding CHECK (stage_norm.is_canonical_stage((h).stage)));
INSERT INTO atk.h VALUES (1, ROW('series-c+'));
RESET ROLE;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c');  -- drops series-c+: refused
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'sec_attacker';
DROP TABLE atk.h;
-- 6. The migration bookkeeping is under row security: a role granted the tables (as
--    docs/migration.md tells a DBA to grant a migrating role) sees and writes only runs on
--    columns it may read and update, and their batches and undo rows for the run's own table.
--    rollback_migration restores only what migrate wrote: undo rows of the run's committed
--    batches, whose new value is what migrate makes of the old one.
GRANT SELECT, INSERT, UPDATE ON stage_norm.migration_runs, stage_norm.migration_batches TO sec_attacker;
GRANT SELECT, INSERT, DELETE ON stage_norm.migration_undo TO sec_attacker;
GRANT SELECT ON stage_norm.migration_progress TO sec_attacker;
CREATE TABLE sec_mig (id int PRIMARY KEY, stage text);
INSERT INTO sec_mig VALUES (1, 'Series A '), (2, 'pre_seed');
SET client_min_messages = warning;
CALL stage_norm.migrate('sec_mig', 'stage', tenant => 'id');
SELECT max(run_id) AS dba_run FROM stage_norm.migration_runs WHERE relid = 'sec_mig'::regclass \gset
UPDATE stage_norm.migration_runs SET status = 'failed', last_error = 'value ''Series A '' rejected' WHERE run_id = :dba_run;
SET ROLE sec_attacker;
CREATE TABLE atk.mine (id int PRIMARY KEY, stage text);
INSERT INTO atk.mine VALUES (1, 'seriesB'), (2, 'Seed Round');
CALL stage_norm.migrate('atk.mine', 'stage');
SELECT max(run_id) AS atk_run FROM stage_norm.migration_runs WHERE relid = 'atk.mine'::regclass \gset
-- another table's runs, batches and original values are not the attacker's to read
SELECT count(*) FILTER (WHERE relid = 'sec_mig'::regclass) AS dba_runs_seen, count(*) AS runs_seen FROM stage_norm.migration_runs;
SELECT count(*) AS dba_undo_seen FROM stage_norm.migration_undo WHERE run_id = :dba_run;
SELECT count(*) AS dba_batches_seen FROM stage_norm.migration_batches WHERE run_id = :dba_run;
SELECT table_name, status, last_error IS NULL AS error_hidden FROM stage_norm.migration_progress WHERE run_id = :dba_run;
-- verify as a reader of the table only: counts, and no last run (it may not read the runs)
RESET ROLE;
CREATE ROLE sec_reader;
GRANT SELECT ON sec_mig TO sec_reader;
GRANT SELECT ON stage_norm.migration_tenant_progress TO sec_attacker;
SET ROLE sec_reader;
SELECT stage_norm.verify('sec_mig', 'stage') - 'stages' AS reader_verify;
SET ROLE sec_attacker;
SELECT count(*) AS tenant_rows_seen FROM stage_norm.migration_tenant_progress WHERE run_id = :dba_run;
-- nor to forge: into the DBA's run, nor into the attacker's run naming the DBA's table
INSERT INTO stage_norm.migration_undo VALUES (:dba_run, 99, 'sec_mig', '{{1}}', '{Hacked!}', '{series-a}');
INSERT INTO stage_norm.migration_undo VALUES (:atk_run, 99, 'sec_mig', '{{1}}', '{Hacked!}', '{series-a}');
UPDATE stage_norm.migration_runs SET relid = 'sec_mig', column_name = 'stage' WHERE run_id = :atk_run;
-- and what it may write on its own run does not make a rollback write past enforcement: an
-- undo row of no batch of the run, and values migrate did not write, are left alone
INSERT INTO stage_norm.migration_undo VALUES (:atk_run, 99, 'atk.mine', '{{1}}', '{Hacked!}', '{series-b}');
DELETE FROM stage_norm.migration_undo WHERE run_id = :atk_run AND batch = 1;
INSERT INTO stage_norm.migration_undo VALUES (:atk_run, 1, 'atk.mine', '{{1},{2}}', '{Hacked!,Seed Round}', '{series-b,seed}');
-- and no undo row with no new value (what migrate never writes) turns a NULL into garbage: a
-- batch of its own run, an undo row old 'garbage', new NULL, for a row that holds NULL
INSERT INTO atk.mine VALUES (3, NULL);
INSERT INTO stage_norm.migration_batches (run_id, batch, relid, rows_scanned, rows_updated, duration_ms, attempts, status)
VALUES (:atk_run, 98, 'atk.mine', 1, 1, 1, 1, 'done');
INSERT INTO stage_norm.migration_undo VALUES (:atk_run, 98, 'atk.mine', '{{3}}', '{garbage}', ARRAY[NULL]::text[]);
RESET ROLE;
CALL stage_norm.rollback_migration(:atk_run);
CALL stage_norm.rollback_migration(:dba_run);
RESET client_min_messages;
SELECT id, stage FROM atk.mine ORDER BY id;
SELECT id, stage FROM sec_mig ORDER BY id;
DROP TABLE sec_mig;
DROP ROLE sec_reader;
-- 9. _sync_trigger records a trigger's column dependencies: it needs the TRIGGER privilege on
--    the table (attach runs it as its caller), and locks the table as CREATE TRIGGER does.
CREATE TABLE sec_gov (id int, stage text);
SELECT stage_norm.attach('sec_gov', 'stage');
SELECT oid AS gov_trigger FROM pg_trigger WHERE tgrelid = 'sec_gov'::regclass AND tgname = 'stage_norm_normalize' \gset
SET ROLE sec_attacker;
SELECT stage_norm._sync_trigger(:gov_trigger);
RESET ROLE;
SELECT stage_norm._sync_trigger(:gov_trigger) AS owner_may;
-- 10. set_at and set_by of an override are stamped by the server on a direct write (a
--     superuser's, such as a restore's, are kept)
SET ROLE sec_attacker;
INSERT INTO stage_norm.table_mode_settings (tbl, mode, set_at, set_by) VALUES ('atk.mine', 'warn', '2000-01-01', 'postgres');
UPDATE stage_norm.table_mode_settings SET set_by = 'postgres' WHERE tbl = 'atk.mine'::regclass;
RESET ROLE;
SELECT set_by, set_at > now() - interval '1 hour' AS set_at_now FROM stage_norm.table_mode_settings WHERE tbl = 'atk.mine'::regclass;
UPDATE stage_norm.table_mode_settings SET set_by = 'restored', set_at = '2020-01-01' WHERE tbl = 'atk.mine'::regclass;
SELECT set_by, set_at FROM stage_norm.table_mode_settings WHERE tbl = 'atk.mine'::regclass;
DELETE FROM stage_norm.table_mode_settings WHERE tbl = 'atk.mine'::regclass;
DROP TABLE sec_gov;
-- search_path, over the whole catalog: every SQL and PL/pgSQL function of the extension pins
-- search_path = pg_catalog, pg_temp (so no object of a user's shadows pg_catalog's or public's
-- inside it); the procedures, which cannot have a SET clause, pin it for their transaction first
-- thing and after every COMMIT.
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'stage_norm'::regnamespace AND l.lanname IN ('sql', 'plpgsql') AND p.prokind <> 'p'
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1;
SELECT p.oid::regprocedure AS procedure,
       p.prosrc ~ '^\s*(--[^\n]*\n\s*)*DECLARE.*?\nBEGIN\s*(--[^\n]*\n\s*)*PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\);' AS pinned_first,
       (SELECT count(*) FROM regexp_matches(p.prosrc, '^\s*COMMIT;', 'gn')) AS commits,
       (SELECT count(*) FROM regexp_matches(p.prosrc, '^\s*COMMIT;[^\n]*\n\s*PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\);', 'gn')) AS pinned_after
  FROM pg_proc p WHERE p.pronamespace = 'stage_norm'::regnamespace AND p.prokind = 'p' ORDER BY 1;
REVOKE ALL ON stage_norm.migration_runs, stage_norm.migration_batches, stage_norm.migration_undo, stage_norm.migration_progress, stage_norm.migration_tenant_progress FROM sec_attacker;
DELETE FROM stage_norm.migration_runs WHERE relid = 'atk.mine'::regclass;
DROP SCHEMA atk CASCADE;
DROP ROLE sec_attacker;
