-- DBA-defined aliases: extra labels that map to a canonical stage.
-- Readable by everyone; written only through add_alias/remove_alias (SECURITY DEFINER,
-- EXECUTE revoked from PUBLIC: the DBA grants it). Every write, by those functions or directly by
-- the owner, fires config_changed, which invalidates every backend's alias cache at commit.
CREATE TABLE stage_norm.aliases (
    alias      text NOT NULL,
    alias_key  text GENERATED ALWAYS AS (stage_norm.stage_key(alias)) STORED PRIMARY KEY,
    stage      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT aliases_key_not_empty CHECK (alias_key <> ''),
    CONSTRAINT aliases_stage_canonical CHECK (stage_norm.is_canonical_stage(stage)),
    -- Aliases extend the rules of the stage set and never redefine them, whoever writes the
    -- table (re-checked by every change of the set).
    CONSTRAINT aliases_extend_builtin CHECK (stage_norm._normalize_stage_rules(alias) IS NULL
                                             OR stage_norm._normalize_stage_rules(alias) = stage)
);
COMMENT ON TABLE stage_norm.aliases IS
    'DBA-defined aliases of stage_norm: alias_key (stage_norm.stage_key(alias)) maps to a canonical stage';
GRANT SELECT ON stage_norm.aliases TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('stage_norm.aliases', '');

-- The statement trigger on the configuration tables (src/cache.rs): a write invalidates every
-- backend's cache at commit. Called any other way than as an AFTER ... FOR EACH STATEMENT
-- trigger it raises 39P01.
CREATE FUNCTION stage_norm.config_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'config_changed_wrapper';

CREATE TRIGGER aliases_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stage_norm.aliases
    FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.config_changed();

CREATE FUNCTION stage_norm.add_alias(alias text, stage text)
RETURNS text
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key      text := stage_norm.stage_key(add_alias.alias);
    v_builtin  text := stage_norm._normalize_stage_rules(add_alias.alias);
    v_existing stage_norm.aliases%ROWTYPE;
BEGIN
    PERFORM stage_norm._refuse_nul(stage, 'the stage', 'add_alias');  -- the alias: by stage_key (v_key)
    IF NOT stage_norm.is_canonical_stage(stage) THEN
        RAISE EXCEPTION 'stage "%" is not a canonical stage', stage
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The canonical stages are: %s.',
                                  (SELECT string_agg(s, ', ') FROM stage_norm.canonical_stages() AS s)),
                  HINT = format('Use the canonical spelling, e.g. stage_norm.add_alias(%L, %L).',
                                alias, coalesce(stage_norm._normalize_stage_rules(stage),
                                                (SELECT s FROM stage_norm.canonical_stages() AS s LIMIT 1)));
    END IF;
    IF v_key = '' THEN
        RAISE EXCEPTION 'alias "%" has an empty key', alias
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Aliases are matched by key: the label after NFKC, dash folding, lowercasing and removal of white space, zero-width characters and the separators "-", "_", ".".',
                  HINT = 'An alias needs at least one other character.';
    END IF;
    IF v_builtin IS NOT NULL AND v_builtin = stage THEN
        -- The set's own rules map it there already (the stage's own name, or a built-in form of
        -- it): an alias would change nothing. Said, not stored (#28).
        RAISE NOTICE 'alias "%" is not needed: the rules already map it to "%"; nothing was added', alias, stage
            USING HINT = 'SELECT * FROM stage_norm.stages; lists the forms each stage takes without aliases.';
        RETURN v_key;
    END IF;
    IF v_builtin IS NOT NULL AND v_builtin <> stage THEN
        RAISE EXCEPTION 'alias "%" conflicts with the built-in rules', alias
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The built-in rules already map %L to %L.', alias, v_builtin),
                  HINT = 'Aliases extend the built-in rules; they cannot redefine them.';
    END IF;

    SELECT * INTO v_existing FROM stage_norm.aliases a WHERE a.alias_key = v_key FOR UPDATE;
    IF FOUND THEN
        IF v_existing.stage = stage THEN
            RETURN v_key;  -- already there: adding it again is a no-op
        END IF;
        RAISE EXCEPTION 'alias "%" already maps to "%"', alias, v_existing.stage
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Key %L is taken by the alias %L.', v_key, v_existing.alias),
                  HINT = format('To re-point it: SELECT stage_norm.remove_alias(%L); then add it again.', alias);
    END IF;

    INSERT INTO stage_norm.aliases (alias, stage) VALUES (alias, stage);
    RETURN v_key;
END
$$;
COMMENT ON FUNCTION stage_norm.add_alias(text, text) IS
    'Adds an alias (keyed by stage_norm.stage_key) for a canonical stage; returns the key';

CREATE FUNCTION stage_norm.remove_alias(alias text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key text := stage_norm.stage_key(remove_alias.alias);
BEGIN
    DELETE FROM stage_norm.aliases a WHERE a.alias_key = v_key;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION stage_norm.remove_alias(text) IS
    'Removes the alias whose key equals stage_norm.stage_key(alias); false when there was none';

REVOKE ALL ON FUNCTION stage_norm.add_alias(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stage_norm.remove_alias(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stage_norm.config_changed() FROM PUBLIC;
