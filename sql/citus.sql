-- Citus: one configuration on every node (docs/scaling.md).
--
-- What must be identical on every node, and how it gets there:
-- - the stage set: the enum type stage_norm.stage_set. Citus propagates its CREATE and DROP
--   (set_stages) to every node in the same distributed transaction, and creates it on a node
--   added later (a distributed object). Nothing to do here.
-- - aliases and the overrides of Citus tables: stage_norm.aliases and
--   stage_norm.citus_table_modes become Citus reference tables (citus_setup): one shard with a
--   placement on every node, written in one distributed transaction (two-phase commit). Each
--   node's cache reads its own placement (src/cache.rs).
-- - settings: per node (postgresql.conf / ALTER SYSTEM); set_cluster_setting sets one on all.
-- citus_check reports any difference; citus_sync repairs the copies and places them on new nodes.

-- Every Citus call is dynamic SQL: these functions exist without Citus too, and refuse there.
CREATE FUNCTION stage_norm._citus_required(what text)
RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_node') IS NULL THEN
        RAISE EXCEPTION 'stage_norm.% needs Citus', what
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The extension citus is not installed in this database.',
                  HINT = 'On one server there is nothing to share: aliases, the stage set and overrides are already one configuration.';
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_required(text) IS 'Internal: raises 0A000 when this database has no Citus';

-- This node's placement of a Citus reference table (NULL when it has none, or tbl is not one).
CREATE FUNCTION stage_norm._citus_local_placement(tbl regclass)
RETURNS regclass
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_shard bigint;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid '
            ' WHERE s.logicalrelid = $1 AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group) LIMIT 1'
       INTO v_shard USING tbl;
    IF v_shard IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.to_regclass((SELECT format('%I.%I', n.nspname, c.relname || '_' || v_shard)
                                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl));
END
$$;
COMMENT ON FUNCTION stage_norm._citus_local_placement(regclass) IS
    'Internal: this node''s placement (shard relation) of a Citus reference table, or NULL';

-- What this node's configuration is, for comparison across nodes (citus_check): one row per
-- item. Reads the local placements, as the cache does. Anyone may call it.
CREATE FUNCTION stage_norm.config_fingerprint()
RETURNS TABLE (item text, value text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from text;
    v_value text;
BEGIN
    item := 'extension version';
    value := (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'stage_norm');
    RETURN NEXT;
    item := 'stage set';
    value := array_to_string(ARRAY(SELECT s FROM stage_norm.canonical_stages() AS s), ', ');
    RETURN NEXT;
    v_from := coalesce(stage_norm._citus_local_placement('stage_norm.aliases'), 'stage_norm.aliases'::regclass)::text;
    EXECUTE format('SELECT count(*) || '' alias(es), md5 '' || md5(coalesce(string_agg(alias_key || ''='' || stage, E''\n'' ORDER BY alias_key), '''')) FROM %s', v_from)
       INTO v_value;
    item := 'aliases';
    value := v_value;
    RETURN NEXT;
    v_from := coalesce(stage_norm._citus_local_placement('stage_norm.citus_table_modes'), 'stage_norm.citus_table_modes'::regclass)::text;
    EXECUTE format('SELECT coalesce(string_agg(table_name || ''='' || mode, '', '' ORDER BY table_name), ''none'') FROM %s', v_from)
       INTO v_value;
    item := 'overrides of Citus tables';
    value := v_value;
    RETURN NEXT;
    FOR item IN SELECT unnest(ARRAY['stage_norm.mode', 'stage_norm.max_mode', 'stage_norm.enforce_percent',
                                    'stage_norm.breaker_reject_ratio', 'stage_norm.breaker_window', 'stage_norm.breaker_min_rows',
                                    'shared_preload_libraries']) LOOP
        -- the value a new session gets (the server's), not this session's SET
        value := (SELECT s.reset_val FROM pg_settings s WHERE s.name = item);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stage_norm.config_fingerprint() IS
    'This node''s stage_norm configuration (version, stage set, aliases, Citus overrides, server settings), as compared by stage_norm.citus_check()';

-- Every node's configuration against the coordinator's: one row per node and item.
CREATE FUNCTION stage_norm.citus_check()
RETURNS TABLE (nodeid int, node text, item text, value text, matches boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    r record;
    v_local jsonb;
    v_remote jsonb;
    v_key text;
BEGIN
    PERFORM stage_norm._citus_required('citus_check');
    SELECT jsonb_object_agg(f.item, f.value) INTO v_local FROM stage_norm.config_fingerprint() f;
    FOR r IN EXECUTE
        'SELECT a.nodeid, coalesce(n.nodename || '':'' || n.nodeport, ''this node'') AS node, a.success, a.result '
        '  FROM pg_catalog.run_command_on_all_nodes($q$SELECT pg_catalog.jsonb_object_agg(item, value) '
        '          || pg_catalog.jsonb_build_object(''prepared_config_changes'', stage_norm._prepared_config_changes()) '
        '     FROM stage_norm.config_fingerprint()$q$) a '
        '  LEFT JOIN pg_catalog.pg_dist_node n ON n.nodeid = a.nodeid ORDER BY a.nodeid'
    LOOP
        nodeid := r.nodeid;
        node := r.node;
        IF NOT r.success THEN
            item := 'reachable';
            value := r.result;
            matches := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_remote := r.result::jsonb;
        FOR v_key IN SELECT jsonb_object_keys(v_local) LOOP
            item := v_key;
            value := v_remote ->> v_key;
            matches := (v_remote ->> v_key) IS NOT DISTINCT FROM (v_local ->> v_key);
            RETURN NEXT;
        END LOOP;
        -- A transaction prepared on the node that changes the configuration and is not committed
        -- (a node that failed between PREPARE and COMMIT): until it is, the node judges rows by
        -- the configuration before it (docs/scaling.md).
        item := 'prepared_config_changes';
        value := (v_remote ->> 'prepared_config_changes')
                 || ': not committed; this node serves the configuration before them until they are. Run SELECT recover_prepared_transactions() on the coordinator.';
        matches := value IS NULL;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stage_norm.citus_check() IS
    'Compares every Citus node''s stage_norm configuration with this node''s (run it on the coordinator): matches is false where a node drifted';

-- Makes the configuration shared: stage_norm.aliases and stage_norm.citus_table_modes become
-- Citus reference tables, and overrides of Citus tables move to citus_table_modes. Once, on
-- the coordinator, after citus_add_node; running it again changes nothing.
CREATE FUNCTION stage_norm.citus_setup()
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_tbl    regclass;
    v_unsafe text;
    v_done   text[] := '{}'::text[];
    v_moved  bigint;
BEGIN
    PERFORM stage_norm._citus_required('citus_setup');
    -- Citus distributes a table with triggers (config_changed, which invalidates every
    -- backend's cache, on every placement) only with this setting.
    v_unsafe := current_setting('citus.enable_unsafe_triggers', true);
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    -- citus_table_modes first: the guard on aliases lets its changes through once both are shared.
    FOREACH v_tbl IN ARRAY ARRAY['stage_norm.citus_table_modes'::regclass, 'stage_norm.aliases'::regclass] LOOP
        IF stage_norm._citus_table(v_tbl) IS NULL THEN
            EXECUTE 'SELECT pg_catalog.create_reference_table($1)' USING v_tbl;
            -- the rows now live in the placements; the node-local copy would only mislead
            EXECUTE 'SELECT pg_catalog.truncate_local_data_after_distributing_table($1)' USING v_tbl;
            v_done := v_done || v_tbl::text;
        ELSIF stage_norm._citus_table(v_tbl) <> 'reference' THEN
            RAISE EXCEPTION 'stage_norm.citus_setup: % is a % Citus table, not a reference table', v_tbl, stage_norm._citus_table(v_tbl)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Only citus_setup should distribute stage_norm''s tables; see docs/scaling.md.';
        END IF;
    END LOOP;
    PERFORM set_config('citus.enable_unsafe_triggers', coalesce(v_unsafe, 'off'), true);
    -- Overrides of Citus tables set before: by name, where every node sees them.
    WITH moved AS (
        DELETE FROM stage_norm.table_mode_settings s WHERE stage_norm._citus_table(s.tbl) IS NOT NULL
        RETURNING (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = s.tbl) AS table_name, s.mode, s.set_at, s.set_by
    )
    INSERT INTO stage_norm.citus_table_modes (table_name, mode, set_at, set_by)
    SELECT table_name, mode, set_at, set_by FROM moved
    ON CONFLICT (table_name) DO NOTHING;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    RETURN CASE WHEN cardinality(v_done) = 0 THEN 'already set up'
                ELSE format('reference tables: %s', array_to_string(v_done, ', ')) END
           || format('; %s override(s) of Citus tables moved to stage_norm.citus_table_modes', v_moved);
END
$$;
COMMENT ON FUNCTION stage_norm.citus_setup() IS
    'Citus: makes stage_norm.aliases and stage_norm.citus_table_modes reference tables, so that every node has one configuration (once, on the coordinator)';

-- Repairs: places the reference tables on nodes added since (replicate_reference_tables), and
-- rewrites every placement of aliases and citus_table_modes from the coordinator's, in one
-- distributed transaction. Run citus_check() after it commits to see every node match.
CREATE FUNCTION stage_norm.citus_sync()
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_aliases jsonb;
    v_modes   jsonb;
BEGIN
    PERFORM stage_norm._citus_required('citus_sync');
    PERFORM stage_norm._citus_require_setup('citus_sync');
    IF stage_norm._citus_local_placement('stage_norm.aliases') IS NULL THEN
        RAISE EXCEPTION 'stage_norm.citus_sync runs on the coordinator, with the coordinator in the Citus metadata'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'This node has no placement of stage_norm.aliases to copy from (or citus_setup has not run).',
                  HINT = 'Run stage_norm.citus_setup() and then this on the coordinator (after SELECT citus_set_coordinator_host(...)).';
    END IF;
    -- block_writes: no logical replication needed (any wal_level); the tables are tiny.
    EXECUTE 'SELECT pg_catalog.replicate_reference_tables(''block_writes'')';
    -- The coordinator's placements are the reference.
    EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_array(alias, stage, created_at)), ''[]'') FROM %s',
                   stage_norm._citus_local_placement('stage_norm.aliases')) INTO v_aliases;
    EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_array(table_name, mode, set_at, set_by)), ''[]'') FROM %s',
                   stage_norm._citus_local_placement('stage_norm.citus_table_modes')) INTO v_modes;
    DELETE FROM stage_norm.aliases;
    INSERT INTO stage_norm.aliases (alias, stage, created_at)
    SELECT a ->> 0, a ->> 1, (a ->> 2)::timestamptz FROM jsonb_array_elements(v_aliases) a;
    DELETE FROM stage_norm.citus_table_modes;
    INSERT INTO stage_norm.citus_table_modes (table_name, mode, set_at, set_by)
    SELECT m ->> 0, m ->> 1, (m ->> 2)::timestamptz, (m ->> 3)::name FROM jsonb_array_elements(v_modes) m;
    RETURN format('%s alias(es) and %s override(s) written to every node', jsonb_array_length(v_aliases), jsonb_array_length(v_modes));
END
$$;
COMMENT ON FUNCTION stage_norm.citus_sync() IS
    'Citus: places stage_norm''s reference tables on new nodes and rewrites every copy from the coordinator''s (then check with citus_check)';

-- ALTER SYSTEM SET (or RESET, for NULL) of one stage_norm setting on every Citus node, a reload,
-- and each node's value as a new session sees it. Not one transaction: each node applies it on
-- its own. Raises (after trying every node) if any node failed or shows another value.
CREATE FUNCTION stage_norm.set_cluster_setting(name text, value text)
RETURNS TABLE (nodeid int, node text, setting text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_cmd    text;
    v_bad    text[];
    v_want   text;
    v_old    text;
    v_try    int := 0;
    v_ids    int[];
    v_nodes  text[];
    v_values text[];
    v_all    boolean;
BEGIN
    PERFORM stage_norm._citus_required('set_cluster_setting');
    IF name IS NULL OR name NOT IN (SELECT s.name FROM pg_settings s WHERE s.name LIKE 'stage\_norm.%' AND s.context <> 'postmaster') THEN
        RAISE EXCEPTION 'stage_norm.set_cluster_setting sets stage_norm''s settings only, not "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: SELECT * FROM stage_norm.set_cluster_setting(''stage_norm.max_mode'', ''warn'');';
    END IF;
    -- The value as pg_settings shows it (base units), checked here first: a value the setting
    -- refuses fails now, before any node is touched.
    v_old := current_setting(name);
    IF value IS NULL THEN
        v_want := (SELECT s.boot_val FROM pg_settings s WHERE s.name = set_cluster_setting.name);
    ELSE
        PERFORM set_config(name, value, true);
        v_want := (SELECT s.setting FROM pg_settings s WHERE s.name = set_cluster_setting.name);
        PERFORM set_config(name, v_old, true);
    END IF;
    v_cmd := CASE WHEN value IS NULL THEN format('ALTER SYSTEM RESET %I', name)
                  ELSE format('ALTER SYSTEM SET %I = %L', name, value) END;
    SELECT array_agg(format('node %s: %s', a.nodeid, a.result)) INTO v_bad
      FROM pg_catalog.run_command_on_all_nodes(v_cmd) a WHERE NOT a.success;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'stage_norm.set_cluster_setting: % failed on some nodes', v_cmd
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = array_to_string(v_bad, '; '),
                  HINT = 'The nodes not listed have the new value in postgresql.auto.conf; fix the others and call it again.';
    END IF;
    PERFORM pg_catalog.run_command_on_all_nodes('SELECT pg_catalog.pg_reload_conf()');
    -- A reload is asynchronous: wait (up to 10 s) until a new session on every node sees it.
    LOOP
        SELECT array_agg(a.nodeid ORDER BY a.nodeid),
               array_agg(coalesce(n.nodename || ':' || n.nodeport, 'this node') ORDER BY a.nodeid),
               array_agg(a.result ORDER BY a.nodeid),
               bool_and(a.success AND a.result IS NOT DISTINCT FROM v_want)
          INTO v_ids, v_nodes, v_values, v_all
          FROM pg_catalog.run_command_on_all_nodes(format('SELECT s.setting FROM pg_catalog.pg_settings s WHERE s.name = %L', name)) a
          LEFT JOIN pg_catalog.pg_dist_node n ON n.nodeid = a.nodeid;
        EXIT WHEN v_all OR v_try >= 100;
        v_try := v_try + 1;
        PERFORM pg_catalog.pg_sleep(0.1);
    END LOOP;
    IF NOT v_all THEN
        RAISE EXCEPTION 'stage_norm.set_cluster_setting: not every node shows % = %', name, v_want
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = (SELECT string_agg(format('%s shows %s', n, coalesce(v, 'nothing')), '; ')
                              FROM unnest(v_nodes, v_values) AS u(n, v) WHERE v IS DISTINCT FROM v_want),
                  HINT = 'A node''s postgresql.conf may set it after postgresql.auto.conf, or its reload failed (see that node''s log).';
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_ids, v_nodes, v_values);
END
$$;
COMMENT ON FUNCTION stage_norm.set_cluster_setting(text, text) IS
    'Citus: ALTER SYSTEM SET (NULL: RESET) one stage_norm setting on every node and reload; returns each node''s value, raises unless all show it';

-- Writes that would make the nodes differ are refused:
-- - an override of a Citus table in table_mode_settings (keyed by this node's oid, never seen
--   by the shards): set_table_mode writes citus_table_modes instead;
-- - a change of aliases while Citus has workers and citus_setup has not run.
CREATE FUNCTION stage_norm._citus_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'table_mode_settings' THEN
        IF stage_norm._citus_table(NEW.tbl) IS NOT NULL THEN
            RAISE EXCEPTION 'the stage_norm mode of Citus table % is kept in stage_norm.citus_table_modes', NEW.tbl
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'An override in stage_norm.table_mode_settings is keyed by this node''s oid; the shards on the workers would never see it.',
                      HINT = format('SELECT stage_norm.set_table_mode(%L, %L);', NEW.tbl::text, NEW.mode);
        END IF;
        RETURN NEW;
    END IF;
    PERFORM stage_norm._citus_require_setup(format('a change of %s', TG_TABLE_NAME));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_guard() IS
    'Internal: refuses writes that would make Citus nodes'' stage_norm configuration differ';
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE ON stage_norm.table_mode_settings
    FOR EACH ROW EXECUTE FUNCTION stage_norm._citus_guard();
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON stage_norm.aliases
    FOR EACH STATEMENT EXECUTE FUNCTION stage_norm._citus_guard();

REVOKE ALL ON FUNCTION stage_norm.citus_setup(), stage_norm.citus_sync(), stage_norm.set_cluster_setting(text, text) FROM PUBLIC;
