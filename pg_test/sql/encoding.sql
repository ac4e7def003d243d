-- Text that is not valid UTF-8 (issue #13, item 1). A C function, a binary-coercible cast, a
-- damaged page or a SQL_ASCII database can hand the functions and the trigger such bytes.
-- stage_norm's rule: they are an unknown label (NULL / false / "unknown" in the trigger);
-- stage_key, which must return a key, refuses them with SQLSTATE 22021.
SET client_min_messages = notice;
CREATE CAST (bytea AS text) WITHOUT FUNCTION;
-- Before the fix, each of these terminated the backend with signal 11.
SELECT stage_norm.normalize_stage('\xc3'::bytea::text) AS lone_lead_byte,
       stage_norm.normalize_stage_builtin('\xc3'::bytea::text) AS builtin,
       stage_norm.normalize_stage('\x53656564c3'::bytea::text) AS seed_then_bad,
       stage_norm.normalize_stage('\xff53656564'::bytea::text) AS bad_then_seed,
       stage_norm.normalize_stage('\xedA0808080'::bytea::text) AS surrogate,
       stage_norm.is_canonical_stage('\x73656564ff'::bytea::text) AS canonical,
       stage_norm.normalize_stage('\x5365726965732041'::bytea::text) AS valid_bytes_still_work;
SELECT stage_norm.stage_key('\xc3'::bytea::text);
DO $$
DECLARE s text;
BEGIN
    PERFORM stage_norm.stage_key('\xe282'::bytea::text);
EXCEPTION WHEN character_not_in_repertoire THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE;
    RAISE NOTICE 'stage_key: sqlstate=%', s;
END $$;
-- add_alias keys the alias with stage_key: refused the same way, nothing stored.
SELECT stage_norm.add_alias('\x416e67656cc3'::bytea::text, 'seed');
SELECT count(*) AS aliases FROM stage_norm.aliases;
-- The trigger: unknown in every mode (stored in warn, rejected in enforce), never a crash.
CREATE TABLE enc (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('enc', 'stage');
INSERT INTO enc VALUES (1, '\x53c3'::bytea::text);
SET stage_norm.mode = 'enforce';
INSERT INTO enc VALUES (2, '\x5365726965732041c3'::bytea::text);
INSERT INTO enc VALUES (3, '\x5365726965732041'::bytea::text);
SET stage_norm.mode = 'shadow';
INSERT INTO enc VALUES (4, '\xff'::bytea::text);
SELECT id, stage::bytea FROM enc ORDER BY id;
SELECT table_name, passed, normalized, warned, rejected, would_reject FROM stage_norm.session_counters
 WHERE table_name = 'enc'::regclass;
RESET stage_norm.mode;
DROP TABLE enc;
DROP CAST (bytea AS text);

-- NUL bytes (#27 item 2). Text from a binary-coercible cast can hold one. An alias holding one
-- used to be stored (its key kept the NUL, so every check passed) and then read by the cache
-- as a C string, cut at the NUL: 'Seed\0x' redefined 'Seed', and '\0' the empty label.
-- Every text a user hands to the configuration is refused with 22021; keys are read as bytes.
CREATE CAST (bytea AS text) WITHOUT FUNCTION;
SELECT stage_norm.add_alias('\x536565640078'::bytea::text, 'pre-seed');
SELECT stage_norm.add_alias('\x00'::bytea::text, 'series-b');
SELECT stage_norm.add_alias('Angel', '\x7365656400'::bytea::text);
SELECT stage_norm.stage_key('\x410042'::bytea::text);
SELECT stage_norm.set_stages('seed', '\x7365726965732d6100'::bytea::text);
INSERT INTO stage_norm.aliases (alias, stage) VALUES ('\x536565640078'::bytea::text, 'pre-seed');
SELECT stage_norm.rename_stage('\x7365656400'::bytea::text, 'sprout');
SELECT stage_norm.rename_stage('seed', '\x7370726f757400'::bytea::text);
CREATE TABLE nul_mode (id int);
SELECT stage_norm.set_table_mode('nul_mode', '\x7761726e00'::bytea::text);
DROP TABLE nul_mode;
SELECT count(*) AS aliases FROM stage_norm.aliases;
SELECT stage_norm.normalize_stage('Seed') AS seed, stage_norm.normalize_stage('') AS empty,
       stage_norm.normalize_stage('\x536565640078'::bytea::text) AS seed_nul_x;
-- A value holding a NUL byte is an unknown label (never a stage) for the functions and the trigger.
CREATE TABLE nul_t (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('nul_t', 'stage');
SET stage_norm.mode = 'enforce';
INSERT INTO nul_t VALUES (1, '\x5365656400'::bytea::text);
RESET stage_norm.mode;
DROP TABLE nul_t;
DROP CAST (bytea AS text);
