-- Peer triggers for the trigger suite (bench/trigger.sql), loaded with \ir.
-- contrib's C triggers come from their extensions:
--   insert_username(col): BEFORE INSERT OR UPDATE, overwrites col with the current user's name
--                         (one heap_modify_tuple per row: a minimal C trigger that rewrites).
--   lo_manage(col):       on INSERT it only fires and returns the row; on UPDATE it compares
--                         the old and new text of col and unlinks nothing when they are equal.
CREATE EXTENSION IF NOT EXISTS insert_username;
CREATE EXTENSION IF NOT EXISTS lo;

-- What a team would write without stage_norm: the same job in PL/pgSQL for one column, "stage".
-- Key = lower(label) without white space and the separators - _ . ; one trailing "round"
-- removed; then the built-in rules of stage_norm (docs/normalization.md) for ASCII labels.
-- Unknown values are rejected (enforce), with the same SQLSTATE as stage_norm (23514).
CREATE OR REPLACE FUNCTION bench.plpgsql_normalize_stage() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    k text;
BEGIN
    IF NEW.stage IS NULL OR (TG_OP = 'UPDATE' AND NEW.stage IS NOT DISTINCT FROM OLD.stage) THEN
        RETURN NEW;
    END IF;
    k := regexp_replace(regexp_replace(lower(NEW.stage), '[[:space:]._-]+', '', 'g'), 'round$', '');
    k := CASE
        WHEN k = 'preseed' THEN 'pre-seed'
        WHEN k = 'seed' THEN 'seed'
        WHEN k ~ '^seriesa[0-9]*$' THEN 'series-a'
        WHEN k ~ '^seriesb[0-9]*$' THEN 'series-b'
        WHEN k ~ '^series[c-z][0-9]*(\+|plus)?$' THEN 'series-c+'
    END;
    IF k IS NULL THEN
        RAISE EXCEPTION 'value "%" for column "stage" of table "%" is not a known investment stage',
            NEW.stage, TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.stage := k;
    RETURN NEW;
END
$$;
