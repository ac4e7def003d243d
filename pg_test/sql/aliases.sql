-- Alias lifecycle, errors and privileges.
SELECT stage_norm.normalize_stage('Angel Round') AS before_alias;
SELECT stage_norm.add_alias('Angel Round', 'pre-seed') AS key;
SELECT stage_norm.normalize_stage('ANGEL-ROUND') AS after_alias,
       stage_norm.normalize_stage_builtin('ANGEL-ROUND') AS builtin_ignores_aliases;
-- Adding the same alias again is a no-op; a different spelling of the same key too.
SELECT stage_norm.add_alias('angel_round', 'pre-seed') AS same_key_again;
SELECT alias, alias_key, stage FROM stage_norm.aliases ORDER BY alias_key;
-- Aliases match the whole key: the round suffix is not removed for them.
SELECT stage_norm.normalize_stage('Angel') AS angel_alone;
SELECT stage_norm.add_alias('Growth', 'series-c+');
SELECT stage_norm.normalize_stage('growth'), stage_norm.normalize_stage('Growth Round') AS growth_round;
-- Errors.
SELECT stage_norm.add_alias('angel round', 'seed');
SELECT stage_norm.add_alias('Bridge', 'Series A');
SELECT stage_norm.add_alias(' - _ ', 'seed');
SELECT stage_norm.add_alias('Series A', 'series-b');
SELECT stage_norm.add_alias('Series A', 'series-a') AS redundant_but_consistent;
SELECT stage_norm.add_alias(NULL, 'seed') IS NULL AS strict;
-- Direct writes are refused to everyone but the owner; the functions are not PUBLIC.
CREATE ROLE sn_app;
CREATE ROLE sn_ops;
GRANT EXECUTE ON FUNCTION stage_norm.add_alias(text, text), stage_norm.remove_alias(text) TO sn_ops;
SET ROLE sn_app;
SELECT count(*) > 0 AS can_read FROM stage_norm.aliases;
SELECT stage_norm.normalize_stage('angel round') AS app_sees_alias;
INSERT INTO stage_norm.aliases (alias, stage) VALUES ('x', 'seed');
DELETE FROM stage_norm.aliases;
SELECT stage_norm.add_alias('Bridge', 'seed');
SELECT stage_norm.remove_alias('angel round');
RESET ROLE;
SET ROLE sn_ops;
SELECT stage_norm.add_alias('Bridge', 'seed');
SELECT stage_norm.normalize_stage('bridge');
RESET ROLE;
-- Removal: true when an alias was removed, false when there was none.
SELECT stage_norm.remove_alias('BRIDGE') AS removed, stage_norm.remove_alias('bridge') AS again;
SELECT stage_norm.normalize_stage('bridge') AS after_remove;
-- A change inside a transaction is visible to its next statement and undone by ROLLBACK.
BEGIN;
SELECT stage_norm.add_alias('Mezzanine', 'series-c+');
SELECT stage_norm.normalize_stage('mezzanine') AS in_tx;
ROLLBACK;
SELECT stage_norm.normalize_stage('mezzanine') AS after_rollback;
-- The owner's direct writes invalidate the cache too (statement trigger).
INSERT INTO stage_norm.aliases (alias, stage) VALUES ('Friends and Family', 'pre-seed');
SELECT stage_norm.normalize_stage('friends & family') AS no_match, stage_norm.normalize_stage('Friends-and-Family');
-- Even a direct write cannot make an alias redefine a built-in label.
INSERT INTO stage_norm.aliases (alias, stage, created_at) VALUES ('Series A', 'seed', '2026-01-01 00:00+00');
TRUNCATE stage_norm.aliases;
SELECT stage_norm.normalize_stage('Friends-and-Family') AS after_truncate;
-- The table is an extension config table, so pg_dump keeps its rows.
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'stage_norm';
DROP ROLE sn_app;
REVOKE ALL ON FUNCTION stage_norm.add_alias(text, text), stage_norm.remove_alias(text) FROM sn_ops;
DROP ROLE sn_ops;
