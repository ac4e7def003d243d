-- Citus without Citus (issue #18): what make test can check. A Citus shard's trigger carries its
-- logical table as the argument '@table=schema.name' (attach writes it on a Citus table, Citus
-- copies it to every shard as written). The trigger honours it only for a table Citus lists as
-- a shard of that table (make citus-check); anywhere else it is ignored, so that a trigger
-- written by hand cannot borrow another table's override, breaker or counters (the security
-- review of #19). Here a plain table plays the shard: the argument is parsed, not honoured.
SET client_min_messages = notice;
CREATE TABLE pc (fund_id int, id int, stage text, PRIMARY KEY (fund_id, id));
CREATE TABLE pc_102008 (LIKE pc INCLUDING ALL);
CREATE TRIGGER stage_norm_normalize_102008 BEFORE INSERT OR UPDATE ON pc_102008
    FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger('@table=public.pc', 'stage');
CREATE TRIGGER stage_norm_summary_102008 AFTER INSERT OR UPDATE ON pc_102008
    FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.summary_trigger();
SET stage_norm.mode = 'enforce';
-- pc's override (by name in citus_table_modes, as set_table_mode writes it for a Citus table)
-- applies to pc...
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('public.pc', 'warn');
SELECT stage_norm.effective_mode('pc') AS pc_mode, stage_norm.effective_mode('pc_102008') AS pretender_mode;
-- ...but not to a table that only names pc in its trigger: it enforces, and names itself.
DO $$
DECLARE s text; m text; d text; t text; c text;
BEGIN
    INSERT INTO pc_102008 VALUES (2, 1, 'Serie Z');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, t = TABLE_NAME, c = COLUMN_NAME;
    RAISE NOTICE 'sqlstate=% message=[%] detail=[%] table=% column=%', s, m, d, t, c;
END $$;
-- The argument is not a column: the governed column is still normalized.
INSERT INTO pc_102008 VALUES (1, 1, 'Series A ');
SELECT id, stage FROM pc_102008 ORDER BY id;
DELETE FROM stage_norm.citus_table_modes;
-- citus_table_modes holds schema-qualified names only, never pg_temp: a name is resolved by
-- every reader, and an unqualified or temporary one would resolve differently per session.
\set VERBOSITY terse
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('pc', 'off');
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('pg_temp.pc', 'off');
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('pg_temp_3.pc', 'off');
\set VERBOSITY default
-- Only the column arguments are columns: table_modes and the column dependency ignore the other.
SELECT stage_norm._sync_trigger(oid) FROM pg_trigger WHERE tgname = 'stage_norm_normalize_102008';
SELECT refobjsubid FROM pg_depend WHERE classid = 'pg_trigger'::regclass
   AND objid = (SELECT oid FROM pg_trigger WHERE tgname = 'stage_norm_normalize_102008') AND refobjsubid > 0;
SELECT table_name, columns FROM stage_norm.table_modes WHERE table_name::text LIKE 'pc%' ORDER BY 1;
-- An argument that names no table at all is refused when the trigger is created (#27 item 7;
-- it used to be accepted and ignored).
CREATE TABLE pc_102009 (LIKE pc INCLUDING ALL);
CREATE TRIGGER stage_norm_normalize_102009 BEFORE INSERT OR UPDATE ON pc_102009
    FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger('@table=nonexistent.x', 'stage');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'pc_102009'::regclass;
DROP TABLE pc_102009;
-- A column named like that argument cannot be governed.
CREATE TABLE odd ("@table=x" text);
SELECT stage_norm.attach('odd', '@table=x');
-- citus_table_modes: written only where set_table_mode would allow (row security).
CREATE ROLE citus_reg_nobody;
GRANT USAGE ON SCHEMA stage_norm TO citus_reg_nobody;
SET ROLE citus_reg_nobody;
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('public.pc', 'off');
RESET ROLE;
-- ... nor for a table of its own that is no Citus table: such a row, left behind when the
-- table is dropped, would govern a later table of that name (it is read before
-- table_mode_settings).
CREATE TABLE own_plain (id int, stage text);
ALTER TABLE own_plain OWNER TO citus_reg_nobody;
SET ROLE citus_reg_nobody;
INSERT INTO stage_norm.citus_table_modes (table_name, mode) VALUES ('public.own_plain', 'off');
SELECT stage_norm.set_table_mode('own_plain', 'off');  -- its own table: table_mode_settings
SELECT stage_norm.set_table_mode('own_plain', NULL);
RESET ROLE;
DROP TABLE own_plain;
-- Without Citus: plain tables are no Citus tables, and the Citus functions say what they need.
SELECT stage_norm._citus_table('pc') IS NULL AS not_citus, stage_norm._citus_local_placement('stage_norm.aliases') IS NULL AS no_placement;
SELECT stage_norm._citus_require_setup('anything');
SELECT stage_norm.citus_setup();
SELECT * FROM stage_norm.citus_check();
SELECT * FROM stage_norm.citus_sync();
SELECT * FROM stage_norm.set_cluster_setting('stage_norm.max_mode', 'warn');
-- This node's configuration as citus_check compares it (the preload list differs by cluster).
SELECT item, value FROM stage_norm.config_fingerprint() WHERE item <> 'shared_preload_libraries';
-- set_table_mode on a plain table keeps writing table_mode_settings.
SELECT stage_norm.set_table_mode('pc', 'shadow');
SELECT tbl, mode FROM stage_norm.table_mode_settings WHERE tbl = 'pc'::regclass;
SELECT count(*) AS citus_rows FROM stage_norm.citus_table_modes;
SELECT stage_norm.set_table_mode('pc', NULL);
RESET stage_norm.mode;
DROP TABLE pc, pc_102008, odd;
DROP OWNED BY citus_reg_nobody;
DROP ROLE citus_reg_nobody;
