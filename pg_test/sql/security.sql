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
DROP SCHEMA atk CASCADE;
DROP ROLE sec_attacker;
