-- Who may change what: an ordinary role cannot weaken enforcement by any route.
CREATE ROLE sn_app LOGIN;
CREATE ROLE sn_ops LOGIN;
CREATE ROLE sn_owner LOGIN;
CREATE ROLE stage_norm_admin NOLOGIN;
CREATE ROLE sn_admin_member LOGIN IN ROLE stage_norm_admin;
CREATE TABLE guarded (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('guarded', 'stage');
GRANT INSERT, SELECT, UPDATE ON guarded TO sn_app, sn_ops;
GRANT CREATE ON SCHEMA public TO sn_owner;
SELECT stage_norm.set_table_mode('guarded', 'enforce');
SET ROLE sn_owner;
CREATE TABLE owned (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('owned', 'stage');
RESET ROLE;
ALTER DATABASE :DBNAME SET stage_norm.mode = enforce;  -- new sessions enforce

-- 1. A placeholder set by an ordinary role before the library is loaded is discarded when the
--    library defines the setting (PostgreSQL 15 remembers who set it).
\c - sn_app
SET stage_norm.mode = off;
SELECT stage_norm.effective_mode('guarded');  -- loads the library: WARNING, value discarded
SHOW stage_norm.mode;
INSERT INTO guarded VALUES (1, 'Nope');
-- 2. Once loaded, SET, SET LOCAL and set_config are refused.
SET stage_norm.mode = off;
BEGIN;
SET LOCAL stage_norm.mode = off;
ROLLBACK;
SELECT set_config('stage_norm.mode', 'off', false);
SET stage_norm.max_mode = off;
SET stage_norm.enforce_percent = 0;
SET stage_norm.log_sample_rate = 1;
-- A typo in the prefix is refused (MarkGUCPrefixReserved), not silently kept.
SET stage_norm.mdoe = off;
-- 3. ALTER ROLE ... SET on itself is refused too.
ALTER ROLE sn_app SET stage_norm.mode = off;
-- 4. The per-table override: not on a table it does not own, by the function or directly.
SELECT stage_norm.set_table_mode('guarded', 'off');
INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('guarded', 'off');
WITH u AS (UPDATE stage_norm.table_mode_settings SET mode = 'off' RETURNING 1) SELECT count(*) AS rows_updated FROM u;
WITH d AS (DELETE FROM stage_norm.table_mode_settings RETURNING 1) SELECT count(*) AS rows_deleted FROM d;
SELECT tbl, mode FROM stage_norm.table_mode_settings;
-- 5. Nor can it drop or disable the trigger of a table it does not own.
ALTER TABLE guarded DISABLE TRIGGER stage_norm_normalize;
SELECT stage_norm.detach('guarded');
INSERT INTO guarded VALUES (1, 'Nope');
SHOW stage_norm.mode;

-- A granted role may: GRANT SET ON PARAMETER (PostgreSQL 15).
\c - postgres
SELECT stage_norm.set_table_mode('guarded', NULL);  -- follow stage_norm.mode again
GRANT SET ON PARAMETER stage_norm.mode TO sn_ops;
\c - sn_ops
SELECT stage_norm.effective_mode('guarded');
SET stage_norm.mode = warn;
INSERT INTO guarded VALUES (2, 'Nope');
SET stage_norm.max_mode = off;  -- not granted
-- Members of stage_norm_admin may set any table's override; owners may set their own.
\c - sn_admin_member
SELECT stage_norm.set_table_mode('guarded', 'shadow');
\c - sn_owner
SELECT stage_norm.set_table_mode('owned', 'warn');
SELECT stage_norm.set_table_mode('guarded', 'off');
\c - postgres
SELECT table_name, override_mode, set_by FROM stage_norm.table_modes ORDER BY 1::text;
SELECT id, stage FROM guarded ORDER BY id;

-- Clean up.
ALTER DATABASE :DBNAME RESET stage_norm.mode;
REVOKE SET ON PARAMETER stage_norm.mode FROM sn_ops;
DROP TABLE guarded;
DROP TABLE owned;
REVOKE CREATE ON SCHEMA public FROM sn_owner;
DELETE FROM stage_norm.table_mode_settings;
DROP ROLE sn_app, sn_ops, sn_owner, sn_admin_member, stage_norm_admin;
