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
DROP SCHEMA atk CASCADE;
DROP ROLE sec_attacker;
