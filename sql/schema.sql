-- CREATE EXTENSION creates schema stage_norm (control file); everyone may use what is in it.
-- Privileged routines revoke EXECUTE from PUBLIC themselves.
GRANT USAGE ON SCHEMA stage_norm TO PUBLIC;
