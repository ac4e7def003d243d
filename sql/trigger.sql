-- The write path: the normalizing trigger, per-table modes, attach/detach.

CREATE FUNCTION stage_norm.normalize_trigger() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_trigger';
COMMENT ON FUNCTION stage_norm.normalize_trigger() IS
    'BEFORE INSERT OR UPDATE FOR EACH ROW trigger; its arguments name the governed columns. Create it with stage_norm.attach';

-- AFTER INSERT OR UPDATE FOR EACH STATEMENT: the WARNING that sums up the unknown values a
-- statement stored beyond the first few (src/trigger/mod.rs). attach creates it.
CREATE FUNCTION stage_norm.summary_trigger() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'summary_trigger_wrapper';

-- Per-table overrides of stage_norm.mode. Readable by everyone. Written through set_table_mode,
-- or directly: row-level security lets a role write the row of a table only when it may
-- (the table's owner, a member of the owner role, or a member of stage_norm_admin), so both
-- routes follow one rule.
CREATE TABLE stage_norm.table_mode_settings (
    tbl    regclass PRIMARY KEY,
    mode   text NOT NULL CHECK (mode IN ('off', 'shadow', 'warn', 'enforce')),
    set_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by name NOT NULL DEFAULT current_user
);
SELECT pg_catalog.pg_extension_config_dump('stage_norm.table_mode_settings', '');
CREATE TRIGGER table_mode_settings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stage_norm.table_mode_settings
    FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.config_changed();

CREATE FUNCTION stage_norm.may_set_table_mode(tbl regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(current_user, c.relowner, 'USAGE')
        OR (EXISTS (SELECT FROM pg_roles r WHERE r.rolname = 'stage_norm_admin')
            AND pg_has_role(current_user, 'stage_norm_admin', 'USAGE'))
      FROM pg_class c WHERE c.oid = tbl
$$;
COMMENT ON FUNCTION stage_norm.may_set_table_mode(regclass) IS
    'True when the current role may set the stage_norm mode of tbl: its owner (or a member of the owner role) or a member of stage_norm_admin';

ALTER TABLE stage_norm.table_mode_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON stage_norm.table_mode_settings FOR SELECT USING (true);
CREATE POLICY write_own ON stage_norm.table_mode_settings FOR ALL
    USING (stage_norm.may_set_table_mode(tbl)) WITH CHECK (stage_norm.may_set_table_mode(tbl));
GRANT SELECT, INSERT, UPDATE, DELETE ON stage_norm.table_mode_settings TO PUBLIC;

-- Overrides of Citus tables (distributed, reference, Citus-local), keyed by the logical table's
-- qualified name, so that every node resolves it to its own relation: on a worker, the shell
-- table its shards' triggers name. stage_norm.citus_setup() makes it a Citus reference table
-- (the same rows on every node, changed in one distributed transaction); without Citus it stays
-- empty. set_table_mode writes here for a Citus table; row security as for table_mode_settings.
CREATE TABLE stage_norm.citus_table_modes (
    -- schema-qualified, and never pg_temp: every node and session resolves it to the same table
    -- whatever its search_path (an unqualified name would be resolved by each reader's path)
    table_name text PRIMARY KEY
               CONSTRAINT citus_table_modes_qualified
               CHECK (pg_catalog.array_length(pg_catalog.parse_ident(table_name), 1) = 2
                      AND pg_catalog.left((pg_catalog.parse_ident(table_name))[1], 7) <> 'pg_temp'),
    mode       text NOT NULL CHECK (mode IN ('off', 'shadow', 'warn', 'enforce')),
    set_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by     name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE stage_norm.citus_table_modes IS
    'Mode overrides of Citus tables by qualified name, identical on every node (a reference table after stage_norm.citus_setup)';
SELECT pg_catalog.pg_extension_config_dump('stage_norm.citus_table_modes', '');
CREATE TRIGGER citus_table_modes_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stage_norm.citus_table_modes
    FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.config_changed();
-- Who set an override and when are the server's to say, on either table: stamped on every
-- insert and update, except a superuser's (pg_restore, citus_setup and citus_sync carry rows
-- over as they were written).
CREATE FUNCTION stage_norm._stamp_mode_setting()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user), false) THEN
        NEW.set_at := pg_catalog.now();
        NEW.set_by := current_user;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION stage_norm._stamp_mode_setting() IS
    'Internal: sets set_at and set_by of table_mode_settings and citus_table_modes rows (unless a superuser writes them)';
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stage_norm.table_mode_settings
    FOR EACH ROW EXECUTE FUNCTION stage_norm._stamp_mode_setting();
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stage_norm.citus_table_modes
    FOR EACH ROW EXECUTE FUNCTION stage_norm._stamp_mode_setting();
ALTER TABLE stage_norm.citus_table_modes ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON stage_norm.citus_table_modes FOR SELECT USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON stage_norm.citus_table_modes TO PUBLIC;

-- What Citus makes of a table: 'distributed', 'reference', 'local' (Citus-local) or NULL (not a
-- Citus table, or no Citus in this database).
CREATE FUNCTION stage_norm._citus_table(tbl regclass)
RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_kind text;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT CASE WHEN p.partmethod = ''h'' THEN ''distributed'' WHEN p.repmodel = ''t'' THEN ''reference'' '
            '            WHEN p.colocationid <> 0 THEN ''distributed'' ELSE ''local'' END '
            '  FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO v_kind USING tbl;
    RETURN v_kind;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_table(regclass) IS
    'Internal: distributed, reference, local (Citus-local) or NULL when tbl is no Citus table';
-- Rows of citus_table_modes only for Citus tables (without Citus: none, but a superuser's), so
-- that a row left behind by a dropped table cannot govern a later plain table of that name.
CREATE POLICY write_own ON stage_norm.citus_table_modes FOR ALL
    USING (stage_norm.may_set_table_mode(pg_catalog.to_regclass(table_name)))
    WITH CHECK (stage_norm.may_set_table_mode(pg_catalog.to_regclass(table_name))
                AND stage_norm._citus_table(pg_catalog.to_regclass(table_name)) IS NOT NULL);

-- Refuses (55000) to change what must be identical on every node while this database has Citus
-- workers and stage_norm's configuration is not shared with them yet.
CREATE FUNCTION stage_norm._citus_require_setup(what text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_workers bigint;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_node') IS NULL
       OR (stage_norm._citus_table('stage_norm.aliases') IS NOT NULL
           AND stage_norm._citus_table('stage_norm.citus_table_modes') IS NOT NULL) THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT count(*) FROM pg_catalog.pg_dist_node WHERE groupid <> (SELECT groupid FROM pg_catalog.pg_dist_local_group)'
       INTO v_workers;
    IF v_workers > 0 THEN
        RAISE EXCEPTION 'stage_norm: % needs the configuration shared with the Citus workers', what
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This database has %s other Citus node(s), and stage_norm.aliases and stage_norm.citus_table_modes are plain tables of each node: the change would reach this node only.', v_workers),
                  HINT = 'Run SELECT stage_norm.citus_setup(); once, on the coordinator (docs/scaling.md).';
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_require_setup(text) IS
    'Internal: raises 55000 when Citus has workers and stage_norm.citus_setup() has not run';

CREATE FUNCTION stage_norm.set_table_mode(tbl regclass, mode text)
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'stage_norm.set_table_mode: tbl must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF mode IS NOT NULL THEN
        PERFORM stage_norm._check_relation(tbl, true);  -- clearing works for a dropped table's oid too
        PERFORM stage_norm._refuse_nul(mode, 'the mode', 'set_table_mode');
    END IF;
    IF mode IS NOT NULL AND mode NOT IN ('off', 'shadow', 'warn', 'enforce') THEN
        RAISE EXCEPTION 'invalid stage_norm mode "%"', mode
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The modes are off, shadow, warn and enforce.',
                  HINT = 'Pass NULL to clear the override and follow stage_norm.mode again.';
    END IF;
    IF NOT stage_norm.may_set_table_mode(tbl) THEN
        RAISE EXCEPTION 'permission denied to set the stage_norm mode of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the table''s owner and members of stage_norm_admin may set it.',
                  HINT = 'Ask a DBA: GRANT stage_norm_admin TO <role>; (CREATE ROLE stage_norm_admin NOLOGIN; first, once).';
    END IF;
    -- A Citus table's override is kept by name in stage_norm.citus_table_modes, which reaches
    -- every node (its shards' triggers look it up there).
    IF stage_norm._citus_table(tbl) IS NOT NULL THEN
        PERFORM stage_norm._citus_require_setup('set_table_mode on a Citus table');
        v_name := (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = tbl);
        IF mode IS NULL THEN
            DELETE FROM stage_norm.citus_table_modes s WHERE s.table_name = v_name;
        ELSE
            -- (Citus evaluates the VALUES on the coordinator, and allows no function in DO UPDATE)
            INSERT INTO stage_norm.citus_table_modes AS s (table_name, mode, set_at, set_by)
            VALUES (v_name, set_table_mode.mode, pg_catalog.now(), current_user)
            ON CONFLICT ON CONSTRAINT citus_table_modes_pkey
            DO UPDATE SET mode = EXCLUDED.mode, set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by;
        END IF;
        RETURN;
    END IF;
    IF mode IS NULL THEN
        DELETE FROM stage_norm.table_mode_settings s WHERE s.tbl = set_table_mode.tbl;
    ELSE
        INSERT INTO stage_norm.table_mode_settings AS s (tbl, mode) VALUES (set_table_mode.tbl, set_table_mode.mode)
        ON CONFLICT ON CONSTRAINT table_mode_settings_pkey
        DO UPDATE SET mode = EXCLUDED.mode, set_at = pg_catalog.now(), set_by = current_user;
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm.set_table_mode(regclass, text) IS
    'Sets (or with NULL clears) the stage_norm mode override of a table; seen by every session from its next statement after commit';

CREATE FUNCTION stage_norm.effective_mode(tbl regclass)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT stage_norm._effective_mode(tbl::oid) $$;
COMMENT ON FUNCTION stage_norm.effective_mode(regclass) IS
    'The mode the stage_norm trigger uses on tbl in this session now: min(override else stage_norm.mode, stage_norm.max_mode)';

-- Every table that has a stage_norm trigger or an override.
CREATE VIEW stage_norm.table_modes AS
WITH governed AS (
    SELECT t.tgrelid AS relid,
           -- the arguments but the logical-table one ('@table=...') of a Citus table's trigger
           -- the arguments: tgargs holds each one's bytes followed by a NUL; split on the NULs and
           -- convert each piece (encode(..., 'escape') would double backslashes and escape bytes
           -- above 0x7f)
           ARRAY(SELECT x.a
                   FROM (SELECT pg_catalog.convert_from(pg_catalog.substr(t.tgargs, p.s, p.e - p.s), pg_catalog.getdatabaseencoding()) AS a, p.s
                           FROM (SELECT pg_catalog.lag(i, 1, -1) OVER (ORDER BY i) + 2 AS s, i + 1 AS e
                                   FROM pg_catalog.generate_series(0, pg_catalog.length(t.tgargs) - 1) AS i
                                  WHERE pg_catalog.get_byte(t.tgargs, i) = 0) AS p) AS x
                  WHERE x.a <> '' AND pg_catalog.left(x.a, 7) <> '@table='
                  ORDER BY x.s)::name[] AS columns,
           t.tgenabled <> 'D' AS trigger_enabled
      FROM pg_catalog.pg_trigger t
     WHERE t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure AND NOT t.tgisinternal
       AND t.tgparentid = 0  -- the tables attach was run on, not each partition's clone
),
overrides AS (
    SELECT o.tbl::oid AS relid, o.mode, o.set_at, o.set_by FROM stage_norm.table_mode_settings o
    UNION ALL  -- Citus tables' overrides, by name (citus_table_modes)
    SELECT pg_catalog.to_regclass(o.table_name)::oid, o.mode, o.set_at, o.set_by FROM stage_norm.citus_table_modes o
     WHERE pg_catalog.to_regclass(o.table_name) IS NOT NULL
)
SELECT c.oid::regclass AS table_name,
       g.columns,
       s.mode AS override_mode,
       stage_norm.effective_mode(c.oid::regclass) AS effective_mode,
       coalesce(g.trigger_enabled, false) AS trigger_enabled,
       s.set_at,
       s.set_by,
       coalesce(b.tripped, false) AS breaker_tripped,
       b.tripped_at AS breaker_tripped_at,
       b.trip_ratio AS breaker_trip_ratio
  FROM governed g
  FULL JOIN overrides s ON s.relid = g.relid
  JOIN pg_catalog.pg_class c ON c.oid = coalesce(g.relid, s.relid)
  -- the circuit breaker (with stage_norm preloaded; otherwise never tripped)
  LEFT JOIN stage_norm._breakers(false) b ON b.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                                          AND b.relid = c.oid;
COMMENT ON VIEW stage_norm.table_modes IS
    'Tables governed by stage_norm or with a mode override, and the mode the trigger uses on each in this session';
GRANT SELECT ON stage_norm.table_modes TO PUBLIC;

CREATE FUNCTION stage_norm.attach(tbl regclass, VARIADIC cols name[])
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_col    name;
    v_args   text;
    v_part   regclass;
    v_citus  text;
    v_unsafe text;
BEGIN
    IF tbl IS NULL OR cols IS NULL OR cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'stage_norm.attach needs a table and at least one column'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT stage_norm.attach(''portfolio'', ''stage'');';
    END IF;
    PERFORM stage_norm._check_relation(tbl, true);
    IF EXISTS (SELECT FROM unnest(cols) AS c WHERE left(c, 7) = '@table=') THEN
        RAISE EXCEPTION 'stage_norm.attach cannot govern a column whose name starts with "@table="'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The trigger''s argument ''@table=...'' names the logical table of a Citus table''s shards.',
                  HINT = 'Rename the column.';
    END IF;
    IF cardinality(cols) <> (SELECT count(DISTINCT c) FROM unnest(cols) AS c) THEN
        RAISE EXCEPTION 'stage_norm.attach names a column twice'
            USING ERRCODE = 'duplicate_column',
                  HINT = 'Name each governed column once.';
    END IF;
    -- Each column: text-like, a jsonb distribution or a stage array, and wide enough for every
    -- canonical stage of the current set.
    FOREACH v_col IN ARRAY cols LOOP
        PERFORM stage_norm._stage_column(tbl, v_col);
        PERFORM stage_norm._writable_column(tbl, v_col, 'attach');
    END LOOP;
    SELECT string_agg(format('%L', c), ', ' ORDER BY o) INTO v_args
      FROM unnest(cols) WITH ORDINALITY AS u(c, o);
    -- A Citus table: Citus copies the trigger to every shard with these arguments, so the
    -- first one names the logical table ('@table=schema.name'): a shard's trigger looks up the
    -- logical table's override and names it in its messages. Citus creates triggers on its
    -- tables only with citus.enable_unsafe_triggers, set here for attach's own statements.
    v_citus := stage_norm._citus_table(tbl);
    IF v_citus IS NOT NULL THEN
        PERFORM stage_norm._citus_require_setup('attach on a Citus table');
        v_args := format('%L, ', '@table=' || (SELECT format('%I.%I', n.nspname, c.relname)
                                                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                                WHERE c.oid = tbl)) || v_args;
        v_unsafe := current_setting('citus.enable_unsafe_triggers', true);
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    -- A partitioned table's trigger is cloned onto every partition; a partition's own
    -- stage_norm trigger (attached before) gives way to the clone, which governs the
    -- columns the parent names.
    FOR v_part IN SELECT t.tgrelid::regclass FROM pg_catalog.pg_partition_tree(tbl) p
                    JOIN pg_catalog.pg_trigger t ON t.tgrelid = p.relid
                   WHERE p.relid <> tbl AND t.tgname = 'stage_norm_normalize' AND t.tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER stage_norm_normalize ON %s', v_part);
        RAISE NOTICE 'partition % now follows the stage_norm trigger of %', v_part, tbl
            USING DETAIL = 'Its own stage_norm_normalize trigger was dropped; the one cloned from the parent governs the parent''s columns.';
    END LOOP;
    EXECUTE format('CREATE OR REPLACE TRIGGER stage_norm_normalize BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger(%s)', tbl, v_args);
    EXECUTE format('CREATE OR REPLACE TRIGGER stage_norm_summary AFTER INSERT OR UPDATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.summary_trigger()', tbl);
    -- Record the governed columns as dependencies of the trigger (DROP COLUMN, ALTER TYPE).
    PERFORM stage_norm._sync_trigger(t.oid) FROM pg_catalog.pg_trigger t
      WHERE t.tgrelid = tbl AND t.tgname = 'stage_norm_normalize';
    -- Partitions get the summary trigger too, for statements that write into them directly.
    PERFORM stage_norm._summarize_partitions(tbl);
    IF v_citus IS NOT NULL THEN
        PERFORM set_config('citus.enable_unsafe_triggers', coalesce(v_unsafe, 'off'), true);
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm.attach(regclass, name[]) IS
    'Creates (or replaces) the triggers stage_norm_normalize and stage_norm_summary on tbl, governing the named columns';

CREATE FUNCTION stage_norm.detach(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_had    boolean;
    v_name   name;
    v_part   regclass;
    v_citus  text;
    v_unsafe text;
BEGIN
    PERFORM stage_norm._check_relation(tbl, false);
    v_had := false;
    -- Citus drops a Citus table's triggers (and its shards') only with this setting.
    v_citus := stage_norm._citus_table(tbl);
    IF v_citus IS NOT NULL THEN
        v_unsafe := current_setting('citus.enable_unsafe_triggers', true);
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    END IF;
    FOR v_name IN SELECT t.tgname FROM pg_trigger t
                   WHERE t.tgrelid = tbl AND t.tgname IN ('stage_norm_normalize', 'stage_norm_summary') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_name, tbl);
        v_had := v_had OR v_name = 'stage_norm_normalize';
    END LOOP;
    -- Partitions that were governed through tbl's trigger lose the summary trigger attach gave them.
    FOR v_part IN SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) p
                   WHERE p.relid <> tbl
                     AND EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = p.relid AND t.tgname = 'stage_norm_summary')
                     AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = p.relid AND t.tgname = 'stage_norm_normalize') LOOP
        EXECUTE format('DROP TRIGGER stage_norm_summary ON %s', v_part);
    END LOOP;
    IF v_citus IS NOT NULL THEN
        PERFORM set_config('citus.enable_unsafe_triggers', coalesce(v_unsafe, 'off'), true);
    END IF;
    RETURN v_had;
END
$$;
COMMENT ON FUNCTION stage_norm.detach(regclass) IS
    'Drops the stage_norm triggers of tbl; true if it had them. A mode override, if any, is kept';

CREATE VIEW stage_norm.session_counters AS
SELECT relid::regclass AS table_name, passed, normalized, warned, rejected,
       would_normalize, would_reject, unchanged, nulls
  FROM stage_norm._session_counters();
COMMENT ON VIEW stage_norm.session_counters IS
    'What the stage_norm trigger did in this session, per table and outcome (backend-local; a later release adds cluster-wide counters)';
GRANT SELECT ON stage_norm.session_counters TO PUBLIC;

-- Every partition (at any level) of tbl that is governed through a clone of a parent's trigger
-- gets stage_norm_summary, so that a statement writing into the partition directly gets its
-- summary too (PostgreSQL clones row triggers only). Returns how many were created.
CREATE FUNCTION stage_norm._summarize_partitions(tbl regclass)
RETURNS int
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_part regclass;
    v_n    int := 0;
BEGIN
    FOR v_part IN SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) p
                   WHERE EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                  WHERE t.tgrelid = p.relid AND t.tgname = 'stage_norm_normalize' AND t.tgparentid <> 0)
                     AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                      WHERE t.tgrelid = p.relid AND t.tgname = 'stage_norm_summary') LOOP
        EXECUTE format('CREATE TRIGGER stage_norm_summary AFTER INSERT OR UPDATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.summary_trigger()', v_part);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION stage_norm._summarize_partitions(regclass) IS
    'Internal: adds stage_norm_summary to the partitions of tbl that are governed through a parent''s trigger';

-- Keeps stage_norm triggers in step with DDL (see src/ddl.rs): after CREATE TABLE (a new
-- partition), ALTER TABLE (RENAME COLUMN, ATTACH PARTITION) and CREATE TRIGGER (a restore, a
-- hand-written trigger), on every table the command touched: a renamed governed column is
-- renamed in the trigger's arguments, the governed columns are recorded as dependencies, and
-- partitions governed through their parent get the summary trigger.
-- SECURITY DEFINER: it runs inside every user's DDL, and must work even where USAGE on schema
-- stage_norm was revoked from PUBLIC; it only reads catalogs and re-creates stage_norm triggers
-- from their own arguments.
CREATE FUNCTION stage_norm._ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tbls oid[];
    v_created oid[];
    v_tbl  oid;
    v_trig oid;
    v_cols name[];
BEGIN
    SELECT array_agg(DISTINCT CASE WHEN c.classid = 'pg_trigger'::regclass
                                   THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = c.objid)
                                   ELSE c.objid END),
           array_agg(DISTINCT c.objid) FILTER (WHERE c.classid = 'pg_class'::regclass)
      INTO v_tbls, v_created
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
     WHERE c.classid IN ('pg_class'::regclass, 'pg_trigger'::regclass);
    -- ALTER TABLE recurses to inheritance children (RENAME COLUMN among others): their own
    -- stage_norm triggers are in step too.
    WITH RECURSIVE tree(relid) AS (
        SELECT unnest(v_tbls)
        UNION
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.relid
    )
    SELECT array_agg(relid) INTO v_tbls FROM tree;
    -- The stage_norm triggers (not clones) of the tables the command touched, and any that
    -- has no column dependency yet (a partition detached by this command becomes one).
    FOR v_trig, v_tbl IN
        SELECT t.oid, t.tgrelid FROM pg_catalog.pg_trigger t
         WHERE t.tgfoid = 'stage_norm.normalize_trigger()'::regprocedure AND t.tgparentid = 0
           AND (t.tgrelid = ANY (v_tbls)
                OR NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid AND d.refobjsubid > 0))
         ORDER BY t.tgrelid, t.oid   -- a parent before its children: its NOTICE first
    LOOP
        v_cols := stage_norm._sync_trigger(v_trig);
        IF v_cols IS NOT NULL THEN
            RAISE NOTICE 'stage_norm: % now governs columns %', v_tbl::regclass, array_to_string(v_cols, ', ')
                USING DETAIL = 'A governed column was renamed; its trigger follows the new name.';
            PERFORM stage_norm.attach(v_tbl::regclass, VARIADIC v_cols);
        END IF;
    END LOOP;
    -- Summary triggers for partitions created or attached by a table command only: after a
    -- CREATE TRIGGER (a restore re-creating the parent's trigger) the dump brings its own.
    PERFORM stage_norm._summarize_partitions(r.oid::regclass)
       FROM pg_catalog.pg_class r
      WHERE r.oid = ANY (v_created) AND (r.relispartition OR r.relkind = 'p');
END
$$;
COMMENT ON FUNCTION stage_norm._ddl_command_end() IS
    'Internal: the event trigger stage_norm_ddl (renamed governed columns, column dependencies, partitions'' summary triggers)';
CREATE EVENT TRIGGER stage_norm_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TRIGGER')
    EXECUTE FUNCTION stage_norm._ddl_command_end();
