-- stage_norm 0.1.0 -> 0.2.0 (written by hand; every step of this release's SQL changes, in order).
-- ALTER EXTENSION stage_norm UPDATE runs it after the new shared library is installed.
\echo Use "ALTER EXTENSION stage_norm UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- #13 write-path fixes.
-- The SQL functions read text as bytes (invalid UTF-8 is an unknown label): same signatures and
-- symbols, nothing to do here; the new shared library carries the fix.

-- DDL on governed columns: the trigger depends on its columns (src/ddl.rs), an event trigger
-- keeps it in step; partitions get the summary trigger; attach makes partitions' own triggers
-- give way to the parent's, and detach removes the partitions' summary triggers; table_modes
-- lists the tables attach was run on, not every partition's clone.
CREATE FUNCTION stage_norm._sync_trigger(tgoid oid) RETURNS text[]
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'sync_trigger_wrapper';

CREATE OR REPLACE FUNCTION stage_norm.detach(tbl regclass)
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
CREATE OR REPLACE VIEW stage_norm.table_modes AS
WITH governed AS (
    SELECT t.tgrelid AS relid,
           pg_catalog.array_remove(pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'), '')::name[] AS columns,
           t.tgenabled <> 'D' AS trigger_enabled
      FROM pg_catalog.pg_trigger t
     WHERE t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure AND NOT t.tgisinternal
       AND t.tgparentid = 0  -- the tables attach was run on, not each partition's clone
)
SELECT c.oid::regclass AS table_name,
       g.columns,
       s.mode AS override_mode,
       stage_norm.effective_mode(c.oid::regclass) AS effective_mode,
       coalesce(g.trigger_enabled, false) AS trigger_enabled,
       s.set_at,
       s.set_by
  FROM governed g
  FULL JOIN stage_norm.table_mode_settings s ON s.tbl = g.relid
  JOIN pg_catalog.pg_class c ON c.oid = coalesce(g.relid, s.tbl);
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

-- ---------------------------------------------------------------------------------------------
-- #14 the fund's own stage set.
CREATE FUNCTION stage_norm.stage_rank(stage text) RETURNS int
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'stage_rank_wrapper';
CREATE FUNCTION stage_norm._normalize_stage_rules(label text) RETURNS text
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stage_rules_wrapper';
CREATE FUNCTION stage_norm._stage_forms() RETURNS TABLE ("position" int, stage text, forms text[])
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'stage_forms_wrapper';
CREATE FUNCTION stage_norm._check_stage_set(stages text) RETURNS bool
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'check_stage_set_wrapper';
CREATE FUNCTION stage_norm._refuse_nul(value text, what text, function text) RETURNS bool
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'refuse_nul_sql_wrapper';
CREATE FUNCTION stage_norm._default_stages() RETURNS text[]
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'default_stages_wrapper';
-- canonical_stages() now lists the configured set.
ALTER FUNCTION stage_norm.canonical_stages() STABLE;

-- Aliases extend the rules of the configured set (was: the built-in rules).
ALTER TABLE stage_norm.aliases DROP CONSTRAINT aliases_extend_builtin;
ALTER TABLE stage_norm.aliases ADD CONSTRAINT aliases_extend_builtin
    CHECK (stage_norm._normalize_stage_rules(alias) IS NULL OR stage_norm._normalize_stage_rules(alias) = stage);
CREATE OR REPLACE FUNCTION stage_norm.add_alias(alias text, stage text)
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

-- The fund's own stage set (docs/normalization.md, "Your own stages").
-- The set is the enum type stage_norm.stage_set, its labels the stages in order; no such type is
-- the default set (pre-seed, seed, series-a, series-b, series-c+). A type and not table rows:
-- pg_dump restores types before any data, and restored CHECK constraints and aliases need the
-- set (table data of schema stage_norm would come after that of schema public). Written only
-- through set_stages / rename_stage / reset_stages (SECURITY DEFINER, EXECUTE revoked from
-- PUBLIC: the DBA grants it, as for add_alias); every session sees a change from its next
-- statement after commit.

-- DROP EXTENSION leaves schema stage_norm, and so a custom set's type, behind (the extension
-- does not own the schema it creates): a new install starts from the default set.
DO $$
BEGIN
    IF pg_catalog.to_regtype('stage_norm.stage_set') IS NOT NULL THEN
        DROP TYPE stage_norm.stage_set;
        RAISE NOTICE 'stage_norm: dropped the stage set left by an earlier install; the default set applies';
    END IF;
END $$;

-- Every stage of the current set: its position, the built-in forms it takes, its aliases.
CREATE VIEW stage_norm.stages AS
SELECT f.position, f.stage, f.forms,
       coalesce((SELECT pg_catalog.array_agg(a.alias ORDER BY a.alias) FROM stage_norm.aliases a WHERE a.stage = f.stage),
                '{}') AS aliases
  FROM stage_norm._stage_forms() f;
COMMENT ON VIEW stage_norm.stages IS
    'The canonical stages of stage_norm in order, with the built-in forms each takes and its aliases';
GRANT SELECT ON stage_norm.stages TO PUBLIC;

-- The width a text-like column (or each element of a stage array) can hold, in characters (NULL:
-- unbounded), through domains.
CREATE FUNCTION stage_norm._column_width(tbl regclass, attnum int2)
RETURNS int
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE chain(typ, typmod, depth) AS (
        SELECT a.atttypid, a.atttypmod, 0 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum = _column_width.attnum
        UNION ALL
        SELECT t.typbasetype, CASE WHEN c.typmod >= 0 THEN c.typmod ELSE t.typtypmod END, c.depth + 1
          FROM chain c JOIN pg_type t ON t.oid = c.typ WHERE t.typbasetype <> 0
    )
    -- (an array of varchar(n) is as wide as its elements)
    SELECT CASE WHEN (CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE c.typ END) IN ('varchar'::regtype, 'bpchar'::regtype)
                     AND c.typmod >= 4 THEN c.typmod - 4 END
      FROM chain c JOIN pg_type t ON t.oid = c.typ ORDER BY c.depth DESC LIMIT 1
$$;

-- Changes the set (the common part of set_stages, rename_stage, reset_stages). Refused, with
-- nothing changed, when:
--   the names do not form a valid set (22023);
--   an index, generated column, materialized view or domain depends on is_canonical_stage, whose
--   answers a change alters (2BP01; drop it first);
--   an alias points at a stage that would go (2BP01; remove_alias, or rename the stage instead);
--   a governed varchar(n)/char(n) column is too short for a new stage (42804);
--   a CHECK that depends on is_canonical_stage or the rules (add_check's, the aliases') would no
--   longer hold for some row (23514, with the tables and values).
CREATE FUNCTION stage_norm._change_stages(stages text[], rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old      text[];
    v_default  text[] := stage_norm._default_stages();
    v_longest  int;
    v_fns      oid[] := ARRAY['stage_norm.is_canonical_stage(text)'::regprocedure::oid,
                              'stage_norm.is_valid_stage_distribution(jsonb)'::regprocedure::oid,
                              'stage_norm.is_canonical_stage_array(text[])'::regprocedure::oid,
                              'stage_norm._normalize_stage_rules(text)'::regprocedure::oid];
    v_list     text;
    v_con      record;
    v_bad      text;
    v_problems text[] := '{}'::text[];
BEGIN
    IF stages IS NULL OR array_position(stages, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a stage set cannot contain NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Name every stage, in order.';
    END IF;
    PERFORM stage_norm._refuse_nul(s, 'a stage name', 'set_stages') FROM unnest(stages) AS s;
    IF EXISTS (SELECT FROM unnest(stages) AS s WHERE strpos(s, E'\n') > 0) THEN
        RAISE EXCEPTION 'a stage name cannot contain a line break'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM stage_norm._check_stage_set(array_to_string(stages, E'\n'));
    -- Set changes and alias writes are serialized on the aliases table (the wrappers take this
    -- lock before they read the current set); taking it accepts the invalidations of a change
    -- committed meanwhile, so the set read below is the committed one.
    LOCK TABLE stage_norm.aliases IN SHARE ROW EXCLUSIVE MODE;
    v_old := ARRAY(SELECT s FROM stage_norm.canonical_stages() AS s);
    IF stages = v_old THEN
        RETURN;  -- the same set: nothing to do
    END IF;

    -- A CHECK that depends on the set is re-checked below by this function, which runs as the
    -- extension's owner: only CHECKs made of built-in code and extensions' code qualify (no
    -- function, operator or type of a user's), so that re-checking runs nobody's code with
    -- those rights.
    SELECT string_agg(format('%s (constraint %I)', c.conrelid::regclass, c.conname), ', ') INTO v_list
      FROM pg_constraint c
     WHERE c.contype = 'c' AND c.conrelid <> 0
       AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_proc'::regclass AND d.refobjid = ANY (v_fns))
       AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
                      AND d.refclassid <> 'pg_class'::regclass
                      AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = d.refclassid
                                         AND e.objid = d.refobjid AND e.deptype = 'e'));
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot change while CHECK constraints that use user-defined code depend on it'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Constraints: %s.', v_list),
                  HINT = 'Re-check them yourself: drop them, change the set, add them again (stage_norm.add_check makes one that qualifies).';
    END IF;

    -- No writer may slip in between the re-check below and the commit: the tables whose CHECKs
    -- depend on the set take no writes until this transaction ends (a writer already running
    -- is waited for, so its rows are re-checked too; one that waits here sees the new set when
    -- it gets its lock). Other sessions' temporary tables cannot be read, and are skipped.
    FOR v_con IN
        SELECT DISTINCT c.conrelid::regclass AS tbl
          FROM pg_depend d JOIN pg_constraint c ON c.oid = d.objid JOIN pg_class r ON r.oid = c.conrelid
         WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_proc'::regclass
           AND d.refobjid = ANY (v_fns) AND c.contype = 'c' AND c.conrelid <> 0
           AND c.conrelid <> 'stage_norm.aliases'::regclass
           AND (r.relpersistence <> 't' OR r.relnamespace = pg_my_temp_schema())
         ORDER BY 1
    LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', v_con.tbl);
    END LOOP;


    -- Objects that store or index is_canonical_stage's answers would go stale.
    SELECT string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), '; ') INTO v_list
      FROM pg_depend d
     WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = ANY (v_fns)
       AND (d.classid = 'pg_class'::regclass                                     -- index
            OR d.classid = 'pg_attrdef'::regclass                                -- generated column
            OR (d.classid = 'pg_rewrite'::regclass                               -- materialized view
                AND EXISTS (SELECT FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                             WHERE r.oid = d.objid AND c.relkind = 'm'))
            OR (d.classid = 'pg_constraint'::regclass
                AND EXISTS (SELECT FROM pg_constraint c WHERE c.oid = d.objid AND c.contypid <> 0)));  -- domain
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot change while objects store answers of stage_norm''s stage checks'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Depending on it: %s.', v_list),
                  HINT = 'Drop them, change the set, then create them again (PostgreSQL does not recompute an index or a generated column when a function''s answers change).';
    END IF;

    -- Aliases of stages that go.
    SELECT string_agg(format('%L -> %L', a.alias, a.stage), ', ' ORDER BY a.alias) INTO v_list
      FROM stage_norm.aliases a
     WHERE a.stage <> ALL (stages) AND a.stage IS DISTINCT FROM rename_from;
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot drop stages that aliases point at'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Aliases: %s.', v_list),
                  HINT = 'Remove them with stage_norm.remove_alias(...), or rename the stage with stage_norm.rename_stage(old, new) (its aliases follow).';
    END IF;

    -- Governed columns too short for the new stages.
    SELECT max(length(s)) INTO v_longest FROM unnest(stages) AS s;
    SELECT string_agg(format('%s.%I (%s characters)', d.refobjid::regclass, a.attname, stage_norm._column_width(d.refobjid::regclass, a.attnum)), ', ')
      INTO v_list
      FROM pg_depend d
      JOIN pg_trigger t ON t.oid = d.objid
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_trigger'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
       AND t.tgfoid = 'stage_norm.normalize_trigger()'::regprocedure
       AND stage_norm._column_width(d.refobjid::regclass, a.attnum) < v_longest;
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'governed columns are too short for the new stage set'
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('The longest new stage has %s characters; too short: %s.', v_longest, v_list),
                  HINT = 'Widen them first, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE varchar(32) (detach, alter, attach).';
    END IF;

    -- Write the set (no type for the default set), and let aliases follow a rename.
    IF pg_catalog.to_regtype('stage_norm.stage_set') IS NOT NULL THEN
        DROP TYPE stage_norm.stage_set;
    END IF;
    IF stages IS DISTINCT FROM v_default THEN
        EXECUTE format('CREATE TYPE stage_norm.stage_set AS ENUM (%s)',
                       (SELECT string_agg(format('%L', s), ', ' ORDER BY o) FROM unnest(stages) WITH ORDINALITY AS u(s, o)));
        COMMENT ON TYPE stage_norm.stage_set IS
            'The canonical stages of stage_norm, in order (written by stage_norm.set_stages; do not use it as a column type)';
    END IF;
    IF rename_from IS NOT NULL THEN
        UPDATE stage_norm.aliases a SET stage = rename_to WHERE a.stage = rename_from;
    END IF;

    -- From here on this transaction classifies with the new set. Every CHECK that depends on
    -- it must still hold for every row; else the whole change is refused.
    FOR v_con IN
        SELECT DISTINCT c.conrelid::regclass AS tbl, c.conname,
               pg_get_expr(c.conbin, c.conrelid) AS expr,
               CASE WHEN cardinality(c.conkey) = 1
                    THEN (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) END AS col,
               -- values are shown only to a caller who may read them (and no row security hides rows)
               cardinality(c.conkey) = 1 AND NOT r.relrowsecurity
                 AND has_column_privilege(session_user, c.conrelid,
                                          (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1])::text,
                                          'SELECT') AS readable
          FROM pg_depend d JOIN pg_constraint c ON c.oid = d.objid JOIN pg_class r ON r.oid = c.conrelid
         WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_proc'::regclass
           AND d.refobjid = ANY (v_fns) AND c.contype = 'c' AND c.convalidated
           AND (r.relpersistence <> 't' OR r.relnamespace = pg_my_temp_schema())
         ORDER BY 1, 2
    LOOP
        IF v_con.readable THEN   -- the values that would fail (at most 5 shown)
            -- Printed by the column type's output function (format's %s), never by a cast to text:
            -- a user's cast (CREATE CAST ... WITH FUNCTION) would run as this function's owner.
            EXECUTE format('SELECT string_agg(v, '', '') FROM (SELECT DISTINCT quote_nullable(left('
                           'CASE WHEN num_nulls(%1$I) = 0 THEN format(''%%s'', %1$I) END, 64)) AS v '
                           'FROM %2$s WHERE NOT (%3$s) LIMIT 5) s', v_con.col, v_con.tbl, v_con.expr)
               INTO v_bad;
        ELSE
            EXECUTE format('SELECT count(*) || '' row(s)'' FROM %s WHERE NOT (%s) HAVING count(*) > 0', v_con.tbl, v_con.expr)
               INTO v_bad;
        END IF;
        IF v_bad IS NOT NULL THEN
            v_problems := v_problems || format('%s (constraint %I): %s', v_con.tbl, v_con.conname, v_bad);
        END IF;
    END LOOP;
    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'the new stage set would break CHECK constraints'
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Rows that would no longer pass: %s.', array_to_string(v_problems, '; ')),
                  HINT = 'Move those rows to stages of the new set first (rename_stage moves aliases, not rows; see docs/normalization.md), then change the set.';
    END IF;
    -- Cached plans may have folded a check of a constant: replan them.
    ALTER FUNCTION stage_norm.is_canonical_stage(text) IMMUTABLE;
    ALTER FUNCTION stage_norm.is_valid_stage_distribution(jsonb) IMMUTABLE;
    ALTER FUNCTION stage_norm.is_canonical_stage_array(text[]) IMMUTABLE;
END
$$;

CREATE FUNCTION stage_norm.set_stages(VARIADIC stages text[])
RETURNS void
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE stage_norm.aliases IN SHARE ROW EXCLUSIVE MODE;  -- see _change_stages
    PERFORM stage_norm._change_stages(stages, NULL, NULL);
END
$$;
COMMENT ON FUNCTION stage_norm.set_stages(text[]) IS
    'Defines the canonical stages, in order; refused (nothing changed) when a CHECK, an alias, an index or a governed column would not follow';

CREATE FUNCTION stage_norm.rename_stage(old_name text, new_name text)
RETURNS void
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_stages text[];
BEGIN
    PERFORM stage_norm._refuse_nul(old_name, 'the old name', 'rename_stage'),
            stage_norm._refuse_nul(new_name, 'the new name', 'rename_stage');
    -- Read the set after taking the lock that serializes changes (see _change_stages).
    LOCK TABLE stage_norm.aliases IN SHARE ROW EXCLUSIVE MODE;
    v_stages := ARRAY(SELECT s FROM stage_norm.canonical_stages() AS s);
    IF old_name <> ALL (v_stages) THEN
        RAISE EXCEPTION 'stage "%" is not a canonical stage', old_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The canonical stages are: %s.', array_to_string(v_stages, ', '));
    END IF;
    IF new_name = ANY (v_stages) AND new_name <> old_name THEN
        RAISE EXCEPTION 'stage "%" already exists', new_name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('The canonical stages are: %s.', array_to_string(v_stages, ', ')),
                  HINT = 'To merge two stages, move their rows and aliases to one of them, then set_stages without the other.';
    END IF;
    PERFORM stage_norm._change_stages(array_replace(v_stages, old_name, new_name), old_name, new_name);
END
$$;
COMMENT ON FUNCTION stage_norm.rename_stage(text, text) IS
    'Renames a canonical stage in place (same position); its aliases follow. Rows are not moved: see docs/normalization.md';

CREATE FUNCTION stage_norm.reset_stages()
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE stage_norm.aliases IN SHARE ROW EXCLUSIVE MODE;  -- see _change_stages
    PERFORM stage_norm._change_stages(stage_norm._default_stages(), NULL, NULL);
END
$$;
COMMENT ON FUNCTION stage_norm.reset_stages() IS
    'Goes back to the default stage set (pre-seed, seed, series-a, series-b, series-c+), with the checks of set_stages';

REVOKE ALL ON FUNCTION stage_norm.set_stages(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION stage_norm.rename_stage(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stage_norm.reset_stages() FROM PUBLIC;
REVOKE ALL ON FUNCTION stage_norm._change_stages(text[], text, text) FROM PUBLIC;

-- The relation tbl names, or a clear error (#27 item 7): 42P01 when it names none (a dropped
-- table's regclass, 0::oid::regclass); with governed, 42809 when it is no table (an index, a
-- sequence, a view) and 42501 for a system catalog or stage_norm's own tables, which
-- stage_norm neither governs nor keeps overrides for.
CREATE FUNCTION stage_norm._check_relation(tbl regclass, governed boolean)
RETURNS void
LANGUAGE plpgsql
STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind "char";
    v_nsp  name;
BEGIN
    SELECT c.relkind, n.nspname INTO v_kind, v_nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table',
                  HINT = 'Name an existing table, e.g. ''public.portfolio''::regclass (a regclass of a dropped table names nothing).';
    END IF;
    IF NOT governed THEN
        RETURN;
    END IF;
    IF v_kind NOT IN ('r', 'p', 'f') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('It is %s.', CASE v_kind WHEN 'i' THEN 'an index' WHEN 'I' THEN 'a partitioned index'
                                                   WHEN 'S' THEN 'a sequence' WHEN 'v' THEN 'a view'
                                                   WHEN 'm' THEN 'a materialized view' WHEN 'c' THEN 'a composite type'
                                                   WHEN 't' THEN 'a TOAST table' ELSE 'not a table' END),
                  HINT = 'stage_norm governs tables: plain, partitioned and foreign ones.';
    END IF;
    IF v_nsp IN ('pg_catalog', 'information_schema', 'pg_toast', 'stage_norm') THEN
        RAISE EXCEPTION 'stage_norm does not govern %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Tables of schema %s are %s.', v_nsp,
                                  CASE v_nsp WHEN 'stage_norm' THEN 'stage_norm''s own configuration and bookkeeping'
                                             ELSE 'system catalogs' END),
                  HINT = 'Govern the tables of your application.';
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm._check_relation(regclass, boolean) IS
    'Internal: 42P01 when tbl names no relation; with governed, 42809/42501 when it is no table stage_norm may govern';

-- Refuses a generated column for a caller that writes it (attach, migrate): 428C9. PostgreSQL
-- computes a stored generated column after the BEFORE triggers (which see NULL there) and a
-- virtual one (18) when it is read, so the trigger could neither judge nor rewrite it, and an
-- UPDATE may not set it.
CREATE FUNCTION stage_norm._writable_column(tbl regclass, col name, caller text)
RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gen "char";
BEGIN
    SELECT a.attgenerated INTO v_gen FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_gen IS NOT NULL AND v_gen <> '' THEN
        RAISE EXCEPTION 'column "%" of % is a generated column: stage_norm.% cannot govern it', col, tbl, caller
            USING ERRCODE = 'generated_always', COLUMN = col,
                  TABLE = (SELECT c.relname FROM pg_class c WHERE c.oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = format('PostgreSQL computes it (%s) from other columns: a BEFORE trigger sees NULL there and cannot rewrite it, and an UPDATE cannot set it.',
                                  CASE v_gen WHEN 's' THEN 'stored, after the BEFORE triggers' ELSE 'virtual, when it is read' END),
                  HINT = 'Govern the columns it is computed from; CALL stage_norm.add_check(...) can still constrain the generated column itself.';
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm._writable_column(regclass, name, text) IS
    'attach and migrate: 428C9 for a generated column (the trigger cannot judge or rewrite it)';

-- The type of the tenant column of tbl for migrate and verify, or a clear error: 22023 for an
-- empty name or the governed column itself, 42703 for a name that is no ordinary column
-- (system columns such as ctid or xmin included), 42501 without SELECT on it.
CREATE FUNCTION stage_norm._tenant_column(tbl regclass, col name, tenant name, caller text)
RETURNS text
LANGUAGE plpgsql
STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text;
BEGIN
    PERFORM stage_norm._check_relation(tbl, false);
    SELECT format_type(a.atttypid, a.atttypmod) INTO v_type
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = tenant AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_type IS NULL OR tenant = col OR tenant = '' THEN
        RAISE EXCEPTION 'stage_norm.%: % is not a tenant column of %', caller, quote_ident(tenant), tbl
            USING ERRCODE = CASE WHEN v_type IS NULL AND tenant <> '' THEN 'undefined_column' ELSE 'invalid_parameter_value' END,
                  COLUMN = tenant, TABLE = (SELECT relname FROM pg_class WHERE oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = CASE WHEN tenant = '' THEN 'An empty name names no column.'
                                WHEN v_type IS NULL THEN 'A tenant is an ordinary column of the table (not a system column such as ctid or xmin).'
                                ELSE 'The governed column cannot be its own tenant.' END,
                  HINT = 'tenant => names another column of the table (for example fund_id); its rows are taken tenant by tenant.';
    END IF;
    IF NOT has_column_privilege(tbl, tenant, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied to read column "%" of %', tenant, tbl
            USING ERRCODE = 'insufficient_privilege', COLUMN = tenant,
                  HINT = format('GRANT SELECT (%I) ON %s TO %I;', tenant, tbl, current_user);
    END IF;
    RETURN v_type;
END
$$;
COMMENT ON FUNCTION stage_norm._tenant_column(regclass, name, name, text) IS
    'Internal: the type of the tenant column of tbl for migrate and verify, or a clear error';

-- _text_column checks the width through domains; attach relies on it.
CREATE OR REPLACE FUNCTION stage_norm._text_column(tbl regclass, col name)
RETURNS int2
LANGUAGE plpgsql
STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_attnum int2;
    v_type   oid;
    v_base   oid;
    v_rel    name;
    v_nsp    name;
    v_width  int;
    v_typmod int;
    v_longest     text;
    v_longest_len int;
BEGIN
    PERFORM stage_norm._check_relation(tbl, false);
    SELECT c.relname, n.nspname INTO v_rel, v_nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    SELECT a.attnum, a.atttypid, a.atttypmod INTO v_attnum, v_type, v_typmod
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
            USING ERRCODE = 'undefined_column', COLUMN = col, TABLE = v_rel, SCHEMA = v_nsp,
                  HINT = 'Name an existing text, varchar, char(n) or citext column.';
    END IF;
    WITH RECURSIVE chain(oid, base) AS (
        SELECT t.oid, t.typbasetype FROM pg_type t WHERE t.oid = v_type
        UNION ALL
        SELECT t.oid, t.typbasetype FROM pg_type t JOIN chain c ON t.oid = c.base
    )
    SELECT c.oid INTO v_base FROM chain c WHERE c.base = 0;
    IF v_base NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)
       AND (SELECT t.typname FROM pg_type t WHERE t.oid = v_base) IS DISTINCT FROM 'citext' THEN
        RAISE EXCEPTION 'column "%" of relation % is of type %, not a text type', col, tbl, format_type(v_type, NULL)
            USING ERRCODE = 'datatype_mismatch', COLUMN = col, TABLE = v_rel, SCHEMA = v_nsp,
                  DETAIL = 'stage_norm governs text, varchar, char(n) and citext columns (or domains over them), jsonb stage distributions, and text[] or varchar[] stage arrays.',
                  HINT = 'Convert the column first, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE text.';
    END IF;
    -- It must hold every canonical stage of the current set (through domains: a domain over
    -- varchar(5) is as short as varchar(5)).
    SELECT s, length(s) INTO v_longest, v_longest_len
      FROM stage_norm.canonical_stages() AS s ORDER BY length(s) DESC LIMIT 1;
    v_width := stage_norm._column_width(tbl, v_attnum);
    IF v_width < v_longest_len THEN
        RAISE EXCEPTION 'column "%" of relation % is too short to hold every canonical stage', col, tbl
            USING ERRCODE = 'datatype_mismatch', COLUMN = col, TABLE = v_rel, SCHEMA = v_nsp,
                  DETAIL = format('It is %s, %s characters wide; the longest canonical stage, %s, has %s characters.',
                                  format_type(v_type, v_typmod), v_width, v_longest, v_longest_len),
                  HINT = 'Widen it, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE varchar(32).';
    END IF;
    RETURN v_attnum;
END
$$;

CREATE OR REPLACE FUNCTION stage_norm.attach(tbl regclass, VARIADIC cols name[])
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

-- ---------------------------------------------------------------------------------------------
-- #15 stage distributions (jsonb) and stage arrays: their functions, attach and add_check
-- accept the new column kinds (_stage_column), and a set change re-checks the CHECKs that use
-- the new checks (_change_stages and _column_width above).
-- Stage distributions (jsonb: stage -> weight) and stage arrays (text[], varchar[]); see
-- docs/distributions.md. Plain C functions (src/kinds.rs): they read jsonb and arrays in their
-- binary form. Volatility follows the text functions: the normalizers read aliases (STABLE);
-- the checks follow only the configured set, whose changes re-check the CHECKs that use them
-- (IMMUTABLE, as is_canonical_stage; docs/normalization.md, "Honesty").
CREATE FUNCTION stage_norm.normalize_stage_distribution(dist jsonb) RETURNS jsonb
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stage_distribution';
COMMENT ON FUNCTION stage_norm.normalize_stage_distribution(jsonb) IS
    'The canonical form of a stage distribution (keys normalized and merged, weights exact), or NULL when it is invalid';

CREATE FUNCTION stage_norm.stage_distribution_errors(dist jsonb) RETURNS text[]
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'stage_distribution_errors';
COMMENT ON FUNCTION stage_norm.stage_distribution_errors(jsonb) IS
    'Every reason why a stage distribution is invalid; empty when normalize_stage_distribution accepts it';

CREATE FUNCTION stage_norm.is_valid_stage_distribution(dist jsonb) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_valid_stage_distribution';
COMMENT ON FUNCTION stage_norm.is_valid_stage_distribution(jsonb) IS
    'True exactly for a valid distribution whose keys are all canonical stages (for CHECK constraints)';

CREATE FUNCTION stage_norm.normalize_stages(stages text[]) RETURNS text[]
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stages';
COMMENT ON FUNCTION stage_norm.normalize_stages(text[]) IS
    'normalize_stage element by element: NULL elements stay NULL, unknown elements become NULL; dimensions and bounds kept';

CREATE FUNCTION stage_norm.is_canonical_stage_array(stages text[]) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_canonical_stage_array';
COMMENT ON FUNCTION stage_norm.is_canonical_stage_array(text[]) IS
    'True when every non-NULL element is a canonical stage (NULL elements allowed; for CHECK constraints)';

-- The kind of a column stage_norm can govern ('text', 'jsonb' or 'array'), or a clear error:
-- text-like columns as _text_column says; jsonb (a stage distribution); text[] or varchar(n)[]
-- (a stage array, wide enough for every stage). Domains over jsonb or arrays are refused: a
-- domain's CHECK runs before the trigger, which could not check what it rewrites against it.
CREATE FUNCTION stage_norm._stage_column(tbl regclass, col name)
RETURNS text
LANGUAGE plpgsql
STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_attnum int2;
    v_type   oid;
    v_base   oid;
    v_elem   oid;
    v_rel    name;
    v_nsp    name;
    v_width  int;
    v_longest     text;
    v_longest_len int;
BEGIN
    PERFORM stage_norm._check_relation(tbl, false);
    SELECT c.relname, n.nspname INTO v_rel, v_nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    SELECT a.attnum, a.atttypid INTO v_attnum, v_type
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        PERFORM stage_norm._text_column(tbl, col);  -- raises undefined_column
    END IF;
    IF v_type = 'jsonb'::regtype THEN
        RETURN 'jsonb';
    END IF;
    SELECT t.typelem INTO v_elem FROM pg_type t WHERE t.oid = v_type AND t.typcategory = 'A';
    IF v_elem IN ('text'::regtype, 'varchar'::regtype) THEN
        SELECT s, length(s) INTO v_longest, v_longest_len
          FROM stage_norm.canonical_stages() AS s ORDER BY length(s) DESC LIMIT 1;
        v_width := stage_norm._column_width(tbl, v_attnum);
        IF v_width < v_longest_len THEN
            RAISE EXCEPTION 'column "%" of relation % is too short to hold every canonical stage', col, tbl
                USING ERRCODE = 'datatype_mismatch', COLUMN = col, TABLE = v_rel, SCHEMA = v_nsp,
                      DETAIL = format('It is %s, %s characters wide; the longest canonical stage, %s, has %s characters.',
                                      format_type(v_type, NULL), v_width, v_longest, v_longest_len),
                      HINT = 'Widen it, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE varchar(32)[].';
        END IF;
        RETURN 'array';
    END IF;
    WITH RECURSIVE chain(oid, base) AS (
        SELECT t.oid, t.typbasetype FROM pg_type t WHERE t.oid = v_type
        UNION ALL
        SELECT t.oid, t.typbasetype FROM pg_type t JOIN chain c ON t.oid = c.base
    )
    SELECT c.oid INTO v_base FROM chain c WHERE c.base = 0;
    IF v_base = 'jsonb'::regtype OR v_elem IS NOT NULL
       OR EXISTS (SELECT FROM pg_type t WHERE t.oid = v_base AND t.typcategory = 'A') THEN
        RAISE EXCEPTION 'column "%" of relation % is of type %, which stage_norm does not govern', col, tbl, format_type(v_type, NULL)
            USING ERRCODE = 'datatype_mismatch', COLUMN = col, TABLE = v_rel, SCHEMA = v_nsp,
                  DETAIL = 'stage_norm governs jsonb stage distributions and text[] or varchar[] stage arrays, not domains over them or arrays of other types.',
                  HINT = 'Govern a jsonb, text[] or varchar[] column; instead of a domain, use its base type with a CHECK constraint (stage_norm.add_check).';
    END IF;
    PERFORM stage_norm._text_column(tbl, col);
    RETURN 'text';
END
$$;

-- CHECK-constraint helper: proves a column canonical. By the column's kind:
--   text-like:  CHECK (stage_norm.is_canonical_stage(col))
--   jsonb:      CHECK (stage_norm.is_valid_stage_distribution(col))
--   text[]:     CHECK (stage_norm.is_canonical_stage_array(col))
-- A procedure, not a function, because it COMMITs between its two steps: ADD CONSTRAINT ...
-- NOT VALID takes ACCESS EXCLUSIVE only for an instant, and VALIDATE CONSTRAINT then scans the
-- table under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on.
CREATE OR REPLACE PROCEDURE stage_norm.add_check(tbl regclass, col name, validate boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    v_attnum  int2;
    v_name    text;
    v_valid   boolean;
    v_exists  boolean;
    v_kind    text;
    v_check   text;
    v_path    text := pg_catalog.current_setting('search_path');   -- the caller's, put back at the end
    v_tblname text := tbl::text;                                  -- as the caller's path prints it
BEGIN
    -- Every name and operator below resolves in pg_catalog only, whatever the caller's search_path
    -- (a procedure that COMMITs cannot have a SET clause): pinned for this transaction here and
    -- again after every COMMIT; the caller's path is back when the CALL's transaction ends.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    v_name := col::pg_catalog.text OPERATOR(pg_catalog.||) '_stage_canonical';
    IF tbl IS NULL OR col IS NULL OR validate IS NULL THEN
        RAISE EXCEPTION 'stage_norm.add_check: arguments must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF validate AND stage_norm._in_transaction_block() THEN
        RAISE EXCEPTION 'stage_norm.add_check(validate => true) cannot run inside a transaction block'
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'It commits between adding the constraint NOT VALID and validating it, so that the ACCESS EXCLUSIVE lock is held only for an instant.',
                  HINT = 'Run it outside BEGIN ... COMMIT, or pass validate => false and run ALTER TABLE ... VALIDATE CONSTRAINT later.';
    END IF;

    -- A table stage_norm may govern: not a view, a catalog or stage_norm's own (it alters it).
    PERFORM stage_norm._check_relation(tbl, true);
    v_kind := stage_norm._stage_column(tbl, col);
    v_check := CASE v_kind WHEN 'jsonb' THEN 'is_valid_stage_distribution'
                           WHEN 'array' THEN 'is_canonical_stage_array'
                           ELSE 'is_canonical_stage' END;
    SELECT a.attnum INTO v_attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = col;
    IF pg_catalog.octet_length(v_name) > 63 THEN
        v_name := 'stage_canonical_' || v_attnum;
    END IF;

    SELECT true, c.convalidated INTO v_exists, v_valid
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = tbl AND c.conname = v_name;
    IF NOT coalesce(v_exists, false) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (stage_norm.%I(%I)) NOT VALID',
                                  tbl, v_name, v_check, col);
        v_valid := false;
        RAISE NOTICE 'added constraint % on % NOT VALID', v_name, v_tblname;
    END IF;
    IF validate AND NOT v_valid THEN
        COMMIT;  -- release the ACCESS EXCLUSIVE lock before the scan
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXECUTE pg_catalog.format('ALTER TABLE %s VALIDATE CONSTRAINT %I', tbl, v_name);
        RAISE NOTICE 'validated constraint % on %', v_name, v_tblname;
    END IF;
    -- (inside the caller's transaction block, validate => false, the rest of it keeps its path)
    PERFORM pg_catalog.set_config('search_path', v_path, true);
END
$$;
COMMENT ON PROCEDURE stage_norm.add_check(regclass, name, boolean) IS
    'Adds CHECK (stage_norm.is_canonical_stage(col)) named <col>_stage_canonical (is_valid_stage_distribution for jsonb, is_canonical_stage_array for arrays): NOT VALID, COMMIT, then VALIDATE';

-- ---------------------------------------------------------------------------------------------
-- #16: migrate, rollback_migration, purge_migration_undo, verify, assert_verified, and their
-- tables and view (sql/migrate.sql, verbatim).
-- Batched, resumable, reversible migration of existing rows (docs/migration.md):
--   CALL stage_norm.migrate(tbl, col, ...)        keyset batches by primary key, COMMIT per batch
--   CALL stage_norm.rollback_migration(run_id)     puts back the original values it changed
--   stage_norm.purge_migration_undo(...)           drops undo data by run or by age
--   stage_norm.verify(tbl, col) / assert_verified  what the column holds; 23514 when not canonical
-- Bookkeeping: migration_runs (one row per run), migration_batches (one per committed batch),
-- migration_undo (the original values), and the view migration_progress.

CREATE TABLE stage_norm.migration_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relid         regclass NOT NULL,            -- the table (a partitioned table: its parent); regclass, so
                                                --   that pg_dump/pg_restore keeps it pointing at the table
    table_name    text NOT NULL,                -- as regclass printed it when the run started
    column_name   name NOT NULL,
    column_kind   text NOT NULL CHECK (column_kind IN ('text', 'jsonb', 'array')),
    key_columns   name[] NOT NULL,
    tenant_column name,                         -- tenant => ...: walked tenant by tenant (NULL: not)
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'paused', 'finished', 'failed', 'rolled back')),
    batch_size    int NOT NULL,
    keep_undo     boolean NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at   timestamptz,
    cursor_relid  regclass,                     -- the partition being walked (the table itself if not partitioned)
    cursor_tenant text[],                       -- tenant runs: the tenant being walked there, as a one-element
                                                --   array (ARRAY[NULL]: the rows whose tenant is NULL)
    cursor_key    text[],                       -- the last key of the last committed batch there (NULL: that
                                                --   partition, or that tenant of it, is done)
    rows_before   bigint,                       -- rows in the table when the run started
    rows_after    bigint,                       -- ... and when it finished
    nulls_before  bigint,
    nulls_after   bigint,
    rows_scanned  bigint NOT NULL DEFAULT 0,
    rows_updated  bigint NOT NULL DEFAULT 0,
    rows_unknown  bigint,                       -- unknown values left in the column when it finished (counted then)
    batches       int NOT NULL DEFAULT 0,
    lock_retries  int NOT NULL DEFAULT 0,
    rows_restored bigint,                       -- rollback_migration: put back
    rows_conflicting bigint,                    -- ... and left alone (changed since the run)
    undo_purged   bigint NOT NULL DEFAULT 0,    -- original values purge_migration_undo deleted
    pid           int,                          -- the backend running it
    last_error    text
);
CREATE INDEX ON stage_norm.migration_runs (relid, column_name) WHERE status IN ('running', 'paused', 'failed');
COMMENT ON TABLE stage_norm.migration_runs IS 'stage_norm.migrate: one row per run (resumed runs keep their row)';

CREATE TABLE stage_norm.migration_batches (
    run_id      bigint NOT NULL REFERENCES stage_norm.migration_runs ON DELETE CASCADE,
    batch       int NOT NULL,
    relid       regclass NOT NULL,
    tenant      text,                           -- tenant runs: the tenant of every row of the batch
    key_from    text[],                         -- exclusive (NULL: from the start)
    key_to      text[],                         -- inclusive (NULL: to the end)
    rows_scanned bigint NOT NULL,
    rows_updated bigint NOT NULL,
    duration_ms double precision NOT NULL,
    attempts    int NOT NULL,
    status      text NOT NULL CHECK (status IN ('done', 'failed')),
    finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    PRIMARY KEY (run_id, batch)
);
COMMENT ON TABLE stage_norm.migration_batches IS 'stage_norm.migrate: one row per committed (or failed) batch';

-- One row per batch (a row per changed table row cost a heap tuple, an index entry and a
-- foreign-key check each: 1.56x the single UPDATE's WAL, docs/benchmarks.md).
CREATE TABLE stage_norm.migration_undo (
    run_id     bigint NOT NULL REFERENCES stage_norm.migration_runs ON DELETE CASCADE,
    batch      int NOT NULL,
    relid      regclass NOT NULL,               -- the table (partition) the batch changed
    keys       text[] NOT NULL,                 -- 2-D: keys[i][j] is the j-th primary-key column of the i-th row, as text
    old_values text[] NOT NULL,                 -- old_values[i]: what the i-th row held (text form of the column's type)
    new_values text[] NOT NULL,                 -- new_values[i]: what migrate wrote
    PRIMARY KEY (run_id, batch)
);
COMMENT ON TABLE stage_norm.migration_undo IS 'stage_norm.migrate(keep_undo => true): the original value of every row it changed, one row per batch';

-- Runs and undo data are the user's: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('stage_norm.migration_runs', '');
SELECT pg_catalog.pg_extension_config_dump('stage_norm.migration_runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stage_norm.migration_batches', '');
SELECT pg_catalog.pg_extension_config_dump('stage_norm.migration_undo', '');

-- Nothing is readable or writable by PUBLIC: the undo table holds values of other tables.
REVOKE ALL ON stage_norm.migration_runs, stage_norm.migration_batches, stage_norm.migration_undo FROM PUBLIC;

-- Row security: a role granted these tables (docs/migration.md, Privileges) sees and writes only
-- the rows of runs on columns it may both read and update, which is what migrating them takes;
-- batches and undo rows only of such runs, and only for the run's table or one of its
-- partitions. So a migrating role can neither read another table's original values nor forge
-- undo rows that a DBA's rollback would write into a table it may not update. Superusers and
-- the tables' owner (the extension's) are not subject to it; rollback_migration checks the undo
-- rows itself as well.
CREATE FUNCTION stage_norm._may_migrate(tbl regclass, col name)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- by attnum: a column renamed or dropped since the run is no error, just not the caller's
    SELECT coalesce(bool_and(has_column_privilege(a.attrelid, a.attnum, 'SELECT')
                             AND has_column_privilege(a.attrelid, a.attnum, 'UPDATE')), false)
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION stage_norm._may_migrate(regclass, name) IS
    'Row security of the migration tables: true when the current role may read and update column col of tbl';

-- The run's table or one of its partitions (an undo or batch row of run_id may name it).
CREATE FUNCTION stage_norm._run_table(run_id bigint, tbl regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM stage_norm.migration_runs r
                    WHERE r.run_id OPERATOR(pg_catalog.=) _run_table.run_id
                      AND (r.relid::oid OPERATOR(pg_catalog.=) tbl::oid
                           OR tbl::oid IN (SELECT t.relid::oid FROM pg_partition_tree(r.relid) t)))
$$;
COMMENT ON FUNCTION stage_norm._run_table(bigint, regclass) IS
    'Row security of the migration tables: true when run run_id is one the current role may see, and tbl is its table or a partition of it';

ALTER TABLE stage_norm.migration_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY migrating_role ON stage_norm.migration_runs
    USING (stage_norm._may_migrate(relid, column_name)) WITH CHECK (stage_norm._may_migrate(relid, column_name));
ALTER TABLE stage_norm.migration_batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY migrating_role ON stage_norm.migration_batches
    USING (stage_norm._run_table(run_id, relid)) WITH CHECK (stage_norm._run_table(run_id, relid));
ALTER TABLE stage_norm.migration_undo ENABLE ROW LEVEL SECURITY;
CREATE POLICY migrating_role ON stage_norm.migration_undo
    USING (stage_norm._run_table(run_id, relid)) WITH CHECK (stage_norm._run_table(run_id, relid));

-- Runs with tenant => ...: the figures of each tenant (batches never mix tenants).
CREATE VIEW stage_norm.migration_tenant_progress AS
SELECT r.run_id, r.table_name, r.column_name, r.tenant_column, b.tenant,
       count(*) FILTER (WHERE b.status = 'done') AS batches,
       sum(b.rows_scanned) AS rows_scanned, sum(b.rows_updated) AS rows_updated,
       max(b.duration_ms) AS longest_batch_ms, min(b.finished_at) AS first_batch_at, max(b.finished_at) AS last_batch_at,
       -- walking now: this tenant's rows of the current partition are not all done
       (r.status <> 'finished' AND r.cursor_tenant IS NOT NULL AND r.cursor_key IS NOT NULL
        AND r.cursor_tenant[1] IS NOT DISTINCT FROM b.tenant) AS in_progress
  FROM stage_norm.migration_runs r
  JOIN stage_norm.migration_batches b ON b.run_id = r.run_id
 WHERE r.tenant_column IS NOT NULL
   -- tenants are values of the table: only for whoever may migrate the column and read the
   -- tenant column (the view runs as its owner, so the tables' row security does not apply)
   AND stage_norm._may_migrate(r.relid, r.column_name)
   AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = r.relid AND a.attname = r.tenant_column AND NOT a.attisdropped
                  AND pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT'))
 GROUP BY r.run_id, b.tenant;
COMMENT ON VIEW stage_norm.migration_tenant_progress IS 'Runs of stage_norm.migrate(tenant => ...): batches, rows scanned and updated, and the longest batch, per tenant';

-- The expression that normalizes a value of each kind, and the predicates on (old, new).
CREATE FUNCTION stage_norm._migrate_sql(kind text, part text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE part
        WHEN 'normalize' THEN CASE kind WHEN 'text' THEN 'stage_norm.normalize_stage(%1$s)'
                                        WHEN 'jsonb' THEN 'stage_norm.normalize_stage_distribution(%1$s)'
                                        ELSE 'stage_norm.normalize_stages(%1$s)' END
        -- a known variant: normalizes to something else, and (arrays) loses no element
        WHEN 'changes' THEN CASE kind WHEN 'array' THEN '(%1$s IS DISTINCT FROM %2$s AND stage_norm._array_unknowns(%1$s, %2$s) = 0)'
                                      -- one call of the normalizer: coalesce(NULL, v) is v, not distinct
                                      ELSE '(%1$s IS DISTINCT FROM coalesce(%2$s, %1$s))' END
        -- not NULL, and no stage (text), not a valid distribution (jsonb), an unknown element (arrays)
        WHEN 'unknown' THEN CASE kind WHEN 'array' THEN '(stage_norm._array_unknowns(%1$s, %2$s) > 0)'
                                      ELSE '(%1$s IS NOT NULL AND %2$s IS NULL)' END
        -- not canonical (verify's non_canonical; NULL is not counted)
        WHEN 'bad' THEN CASE kind WHEN 'text' THEN 'NOT stage_norm.is_canonical_stage(%1$s)'
                                  WHEN 'jsonb' THEN 'NOT stage_norm.is_valid_stage_distribution(%1$s)'
                                  ELSE 'NOT stage_norm.is_canonical_stage_array(%1$s)' END
    END
$$;

-- Elements of `a` that normalize_stages turned into NULL (unknown stages), in storage order.
CREATE FUNCTION stage_norm._array_unknowns(a text[], n text[])
RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*)::int FROM unnest(a, n) AS u(o, x) WHERE o IS NOT NULL AND x IS NULL $$;

-- The table's primary key columns (in key order) and their types, or a clear error.
CREATE FUNCTION stage_norm._primary_key(tbl regclass, OUT cols name[], OUT types text[])
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM stage_norm._check_relation(tbl, false);
    SELECT array_agg(a.attname ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
      INTO cols, types
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = tbl AND i.indisprimary;
    IF cols IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  TABLE = (SELECT relname FROM pg_class WHERE oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = 'stage_norm.migrate walks a table in batches by its primary key (keyset pagination), so that every batch is a key range and a run can resume after the last committed one.',
                  HINT = 'Add a primary key (ALTER TABLE ... ADD PRIMARY KEY, on a unique index built CONCURRENTLY), or migrate with the plain SQL loop of docs/migration.md keyed by another unique, btree-ordered column.';
    END IF;
END
$$;

-- Tenant runs: the tenant group after `after` in one table (rows with a NULL tenant form the
-- last group, ARRAY[NULL]); `after` NULL: the first group. NULL: no group left.
CREATE FUNCTION stage_norm._migrate_next_tenant(tbl regclass, tenant name, tenant_type text, after text[])
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text[];
BEGIN
    IF after IS NULL OR after[1] IS NOT NULL THEN
        EXECUTE format('SELECT ARRAY[t.%1$I::text] FROM %2$s t WHERE t.%1$I IS NOT NULL %3$s ORDER BY t.%1$I LIMIT 1',
                       tenant, tbl, CASE WHEN after IS NOT NULL THEN format('AND t.%I > %L::%s', tenant, after[1], tenant_type) ELSE '' END)
           INTO v;
        IF v IS NULL THEN
            EXECUTE format('SELECT CASE WHEN EXISTS (SELECT 1 FROM %2$s t WHERE t.%1$I IS NULL) THEN ARRAY[NULL]::text[] END', tenant, tbl)
               INTO v;
        END IF;
    END IF;
    RETURN v;
END
$$;

-- Keys and tenants are kept as text (cursor, undo) and cast back, possibly in another session:
-- their text forms must not depend on the session (DateStyle, IntervalStyle, float digits,
-- bytea output). Set for the calling transaction only.
CREATE FUNCTION stage_norm._migrate_pin_formats()
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT set_config('datestyle', 'ISO, YMD', true), set_config('intervalstyle', 'postgres', true),
           set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)
$$;

-- The advisory lock key of a run on (table, column): session-level, see migrate.
CREATE FUNCTION stage_norm._migrate_lock_key(tbl oid, col name)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashtextextended('stage_norm.migrate ' || tbl::text || ' ' || col, 0) $$;

CREATE FUNCTION stage_norm._uncounted_transaction() RETURNS void
VOLATILE STRICT PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'uncounted_transaction_wrapper';
-- Marks the calling transaction's trigger work as migrate's own: the cluster-wide statistics
-- do not count it (its rewrites would count as values passed and dilute the unknown ratio that
-- decides "ready to enforce", #28). Only for the backend that holds the run's lock, i.e. runs
-- migrate on this column: nobody else can hide writes from the statistics this way.
CREATE FUNCTION stage_norm._migrate_uncounted(tbl oid, col name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k bigint := stage_norm._migrate_lock_key(tbl, col);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted AND l.objsubid = 1
                      AND l.classid = ((k >> 32) & 4294967295)::oid AND l.objid = (k & 4294967295)::oid) THEN
        RAISE EXCEPTION 'stage_norm._migrate_uncounted: this session runs no migration of column "%" of %', col, tbl::regclass
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM stage_norm._uncounted_transaction();
END
$$;
REVOKE EXECUTE ON FUNCTION stage_norm._uncounted_transaction() FROM PUBLIC;

-- (after _migrate_lock_key, which it uses to tell a running run from an interrupted one)
CREATE VIEW stage_norm.migration_progress AS
SELECT r.run_id, r.table_name, r.column_name,
       -- 'running' only while a backend holds the run's lock: a run whose backend was killed (or
       -- whose server crashed) shows as 'interrupted' until the next call resumes it (#28).
       CASE WHEN r.status = 'running' AND NOT EXISTS (
                 SELECT FROM pg_catalog.pg_locks l, LATERAL (SELECT stage_norm._migrate_lock_key(r.relid::oid, r.column_name) AS k) lk
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                    AND l.classid = ((lk.k >> 32) & 4294967295)::oid AND l.objid = (lk.k & 4294967295)::oid)
            THEN 'interrupted' ELSE r.status END AS status,
       r.pid, r.started_at, r.updated_at,
       r.batches, r.rows_scanned, r.rows_updated, r.rows_unknown, r.lock_retries, r.rows_before,
       CASE WHEN r.rows_before > 0 THEN round(100.0 * least(r.rows_scanned, r.rows_before) / r.rows_before, 1) END AS percent_done,
       CASE WHEN r.rows_scanned > 0 AND r.rows_before > r.rows_scanned AND r.status = 'running'
            THEN (r.updated_at - r.started_at) * ((r.rows_before - r.rows_scanned)::float8 / r.rows_scanned) END AS eta,
       -- an error may quote a value: shown to whoever may read and update the column, not to
       -- every role granted the view (which runs as its owner, so row security does not apply)
       CASE WHEN stage_norm._may_migrate(r.relid, r.column_name) THEN r.last_error END AS last_error
  FROM stage_norm.migration_runs r
 WHERE r.status IN ('running', 'paused', 'failed');
COMMENT ON VIEW stage_norm.migration_progress IS 'Runs of stage_norm.migrate not finished: figures as of their last committed batch, percent done and an ETA';


-- Releases every hold this session has on a run's advisory lock (an earlier call of this
-- session that was cancelled may have left one).
CREATE FUNCTION stage_norm._migrate_unlock(k bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WHILE EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
                     AND l.classid = ((k >> 32) & 4294967295)::oid AND l.objid = (k & 4294967295)::oid AND l.objsubid = 1) LOOP
        PERFORM pg_advisory_unlock(k);
    END LOOP;
END
$$;

-- Marks a run stopped by an error or a cancel (resumable) and releases its lock; the caller
-- commits and raises.
CREATE FUNCTION stage_norm._migrate_stop(run bigint, lock_key bigint, err text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE stage_norm.migration_runs r SET status = 'failed', last_error = err, updated_at = clock_timestamp(), pid = NULL
     WHERE r.run_id = run;
    PERFORM stage_norm._migrate_unlock(lock_key);
END
$$;

-- Sleeps; false when cancelled (statement_timeout, pg_cancel_backend) instead of raising, so
-- that the caller can mark its run and release its lock first.
CREATE FUNCTION stage_norm._migrate_sleep(seconds float8)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_sleep(seconds);
    RETURN true;
EXCEPTION WHEN query_canceled THEN
    RETURN false;
END
$$;

-- One batch of run `run_id` (batch number `batch`): the next `size` keys of partition `leaf`
-- after `key_from` (NULL: from its start), within tenant `tenant` of a tenant run (NULL there:
-- the rows whose tenant is NULL), normalized by one statement; with the run's undo, the rows that
-- change are locked in key order and their old and new values kept as one undo row. Returns how
-- many rows the range holds, how many were rewritten, and its last key (NULL: the range reached
-- the end). Runs with the caller's rights, in the caller's transaction: migrate's loop commits
-- it, retries it on a lock timeout and does the bookkeeping (pg_partman's split of
-- partition_data_proc and partition_data_id). Testable alone (pg_test/migrate.sql).
CREATE FUNCTION stage_norm._migrate_batch(run_id bigint, batch int, leaf regclass, tenant text, key_from text[], size int,
                                          OUT rows_scanned bigint, OUT rows_updated bigint, OUT key_to text[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run      stage_norm.migration_runs;
    v_types    text[];
    v_colt     text;            -- t.<col>
    v_normt    text;            -- the normalized value of t.<col>
    v_changest text;            -- t.<col> is a known variant
    v_keylist  text;            -- k1, k2
    v_keytext  text;            -- ARRAY[k1::text, k2::text]
    v_gt       text;            -- (k1, k2) > ($1[1]::t1, $1[2]::t2)
    v_le       text;            -- (k1, k2) <= ($2[1]::t1, $2[2]::t2)
    v_tpred    text;            -- the tenant's predicate on t (true when not a tenant run)
    v_tids     tid[];
    v_ukeys    text[];
    v_olds     text[];
    v_news     text[];
    v_seqscan  text;
BEGIN
    SELECT * INTO v_run FROM stage_norm.migration_runs r WHERE r.run_id = _migrate_batch.run_id;
    IF NOT FOUND OR leaf IS NULL OR batch IS NULL OR size IS NULL OR size < 1 THEN
        RAISE EXCEPTION 'stage_norm._migrate_batch: no run %, or no partition, batch number or positive size', run_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'It is migrate''s; CALL stage_norm.migrate(...) instead.';
    END IF;
    SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.o) INTO v_types
      FROM unnest(v_run.key_columns) WITH ORDINALITY AS k(c, o)
      JOIN pg_attribute a ON a.attrelid = leaf AND a.attname = k.c AND a.attnum > 0 AND NOT a.attisdropped;
    -- The statement pieces.
    v_colt := 't.' || quote_ident(v_run.column_name);
    v_normt := format(stage_norm._migrate_sql(v_run.column_kind, 'normalize'), v_colt);
    v_changest := format(stage_norm._migrate_sql(v_run.column_kind, 'changes'), v_colt, v_normt);
    SELECT string_agg(format('%I', k), ', ' ORDER BY o),
           'ARRAY[' || string_agg(format('%I::text', k), ', ' ORDER BY o) || ']',
           '(' || string_agg(format('%I', k), ', ' ORDER BY o) || ') > (' || string_agg(format('$1[%s]::%s', o, v_types[o]), ', ' ORDER BY o) || ')',
           '(' || string_agg(format('%I', k), ', ' ORDER BY o) || ') <= (' || string_agg(format('$2[%s]::%s', o, v_types[o]), ', ' ORDER BY o) || ')'
      INTO v_keylist, v_keytext, v_gt, v_le
      FROM unnest(v_run.key_columns) WITH ORDINALITY AS u(k, o);
    v_tpred := CASE WHEN v_run.tenant_column IS NULL THEN 'true'
                    WHEN tenant IS NULL THEN format('t.%I IS NULL', v_run.tenant_column)
                    ELSE format('t.%I = %L::%s', v_run.tenant_column, tenant,
                                (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                  WHERE a.attrelid = leaf AND a.attname = v_run.tenant_column AND a.attnum > 0 AND NOT a.attisdropped)) END;
    -- The range: the next `size` keys after the cursor, up to its last key (NULL: to the end),
    -- read from the primary key alone. Unknown values are counted once, when the run finishes:
    -- counting them per batch read every row once more (8% of a run, docs/benchmarks.md, #28).
    EXECUTE format('SELECT %1$s FROM %2$s t WHERE %3$s AND ($1::text[] IS NULL OR %4$s) ORDER BY %5$s OFFSET %6$s LIMIT 1',
                   v_keytext, leaf, v_tpred, v_gt, v_keylist, size - 1)
       INTO key_to USING key_from;
    IF key_to IS NOT NULL THEN
        rows_scanned := size;
    ELSE
        EXECUTE format('SELECT count(*) FROM %1$s t WHERE %2$s AND ($1::text[] IS NULL OR %3$s)', leaf, v_tpred, v_gt)
           INTO rows_scanned USING key_from;
    END IF;
    IF NOT v_run.keep_undo THEN
        -- One UPDATE of the range's known variants: PostgreSQL's own recheck rewrites a row a
        -- concurrent writer changed meanwhile from its new value (no lost update).
        EXECUTE format('UPDATE %1$s t SET %2$I = %3$s WHERE %4$s AND ($1::text[] IS NULL OR %5$s) AND ($2::text[] IS NULL OR %6$s) AND %7$s',
                       leaf, v_run.column_name, v_normt, v_tpred, v_gt, v_le, v_changest)
            USING key_from, key_to;
        GET DIAGNOSTICS rows_updated = ROW_COUNT;
        RETURN;
    END IF;
    -- Lock the range's rows that change, in key order, reading their current values (a row a
    -- concurrent writer changed meanwhile is read again: the undo holds what was really there);
    -- rewrite exactly those row versions (locked: nobody else changes them now) by ctid; keep
    -- their keys and values in one undo row.
    EXECUTE format($q$
        SELECT array_agg(c._sn_tid), array_agg(c._sn_key), array_agg(c._sn_old), array_agg(c._sn_new)
          FROM (SELECT t.ctid AS _sn_tid, %1$s AS _sn_key, t.%2$I::text AS _sn_old, (%3$s)::text AS _sn_new
                  FROM %4$s t
                 WHERE %5$s AND ($1::text[] IS NULL OR %6$s) AND ($2::text[] IS NULL OR %7$s) AND %8$s
                 ORDER BY %9$s
                   FOR NO KEY UPDATE OF t) c$q$,
        v_keytext, v_run.column_name, v_normt, leaf, v_tpred, v_gt, v_le, v_changest, v_keylist)
       INTO v_tids, v_ukeys, v_olds, v_news USING key_from, key_to;
    rows_updated := 0;
    IF v_tids IS NOT NULL THEN
        -- By TID scan: with the batch's thousands of TIDs in hand, the planner costs a sequential
        -- scan of the whole table lower, and a run then read the table once per batch (O(rows^2),
        -- #28). enable_seqscan only for this statement (transaction-local, put back at once).
        v_seqscan := current_setting('enable_seqscan');
        PERFORM set_config('enable_seqscan', 'off', true);
        EXECUTE format('UPDATE %1$s t SET %2$I = %3$s WHERE t.ctid = ANY($1)', leaf, v_run.column_name, v_normt)
            USING v_tids;
        GET DIAGNOSTICS rows_updated = ROW_COUNT;
        PERFORM set_config('enable_seqscan', v_seqscan, true);
        INSERT INTO stage_norm.migration_undo (run_id, batch, relid, keys, old_values, new_values)
        VALUES (v_run.run_id, _migrate_batch.batch, leaf, v_ukeys, v_olds, v_news);
    END IF;
END
$$;
COMMENT ON FUNCTION stage_norm._migrate_batch(bigint, int, regclass, text, text[], int) IS
    'One batch of a stage_norm.migrate run (its loop commits, retries and records it): rows in the range, rows rewritten, the range''s last key';

CREATE PROCEDURE stage_norm.migrate(
    tbl regclass,
    col name,
    batch_size int DEFAULT 5000,
    pause_ms int DEFAULT 0,
    max_batches int DEFAULT NULL,
    keep_undo boolean DEFAULT true,
    lock_timeout_ms int DEFAULT 1000,
    max_lock_retries int DEFAULT 20,
    max_replica_lag interval DEFAULT NULL,
    tenant name DEFAULT NULL)
LANGUAGE plpgsql
-- No SET clause: a procedure with one cannot COMMIT. It runs with its caller's rights and
-- search_path; PostgreSQL looks in pg_catalog first, and every name of ours is qualified.
AS $$
DECLARE
    v_noright  text;
    v_kind     text;
    v_keys     name[];
    v_lock     bigint;
    v_run      stage_norm.migration_runs;
    v_leaves   oid[];
    v_leaf     oid;
    v_cursor   text[];
    v_to       text[];
    v_size     int;
    v_attempts int;
    v_done     int := 0;
    v_scanned  bigint; v_updated bigint;
    v_t0       timestamptz;
    v_ms       float8;
    v_err_state text; v_err_msg text; v_err_detail text; v_err_hint text;
    v_lag      interval;
    v_eta      text;
    v_stop     boolean := false;
    v_summary  jsonb;
    v_bad      bigint;
    v_fatal    boolean;
    v_saved    stage_norm.migration_runs;
    v_holder   int;
    v_tencol   name;            -- tenant runs: the tenant column, its type, the group being walked
    v_tentype  text;
    v_group    text[];
    v_first    boolean;
    v_resume   boolean;
    v_tblname  text := tbl::text;  -- as the caller's search_path prints it (before the path is pinned)
BEGIN
    -- Every name and operator below resolves in pg_catalog only, whatever the caller's search_path
    -- (a procedure that COMMITs cannot have a SET clause): pinned for this transaction here and
    -- again after every COMMIT; the caller's path is back when the CALL's transaction ends.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF tbl IS NULL OR col IS NULL OR batch_size IS NULL OR pause_ms IS NULL OR keep_undo IS NULL
       OR lock_timeout_ms IS NULL OR max_lock_retries IS NULL THEN
        RAISE EXCEPTION 'stage_norm.migrate: arguments must not be NULL (except max_batches and max_replica_lag)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch_size < 1 OR pause_ms < 0 OR lock_timeout_ms < 1 OR max_lock_retries < 0 OR max_batches < 1 THEN
        RAISE EXCEPTION 'stage_norm.migrate: batch_size, lock_timeout_ms and max_batches must be positive; pause_ms and max_lock_retries not negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Fail fast, before anything happens: a transaction block cannot COMMIT per batch.
    IF stage_norm._in_transaction_block() THEN
        RAISE EXCEPTION 'stage_norm.migrate cannot run inside a transaction block'
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'It commits after every batch, so that each batch holds its row locks only for its own duration and an interrupted run keeps every committed batch.',
                  HINT = 'Run CALL stage_norm.migrate(...) on its own, outside BEGIN ... COMMIT (psql: not in a single-transaction script).';
    END IF;
    -- A table stage_norm may govern: not a view, a catalog or stage_norm's own (it writes).
    PERFORM stage_norm._check_relation(tbl, true);
    v_kind := stage_norm._stage_column(tbl, col);
    PERFORM stage_norm._writable_column(tbl, col, 'migrate');
    -- It runs with the caller's rights: refuse up front rather than in the first batch.
    IF NOT has_column_privilege(tbl, col, 'UPDATE') OR NOT has_column_privilege(tbl, col, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied to migrate column "%" of %', col, v_tblname
            USING ERRCODE = 'insufficient_privilege', COLUMN = col,
                  TABLE = (SELECT relname FROM pg_class WHERE oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = format('stage_norm.migrate runs with the rights of its caller (%s), which needs SELECT and UPDATE on the column.', current_user),
                  HINT = format('GRANT SELECT, UPDATE (%I) ON %s TO %I; or run it as the table owner. It also needs SELECT, INSERT, UPDATE on stage_norm.migration_runs and stage_norm.migration_batches and INSERT on stage_norm.migration_undo (docs/migration.md, Privileges).', col, tbl, current_user);
    END IF;
    -- It walks a partitioned table's leaf partitions themselves (PostgreSQL checks the rights of
    -- the table a statement names, not its parent's): refuse up front, naming them.
    SELECT string_agg(p.relid::text, ', ' ORDER BY p.relid::text) INTO v_noright
      FROM pg_partition_tree(tbl) p
     WHERE p.isleaf AND p.relid <> tbl
       AND NOT (has_column_privilege(p.relid, col, 'UPDATE') AND has_column_privilege(p.relid, col, 'SELECT'));
    IF v_noright IS NOT NULL THEN
        RAISE EXCEPTION 'permission denied to migrate column "%" of the partitions of %', col, v_tblname
            USING ERRCODE = 'insufficient_privilege', COLUMN = col,
                  TABLE = (SELECT relname FROM pg_class WHERE oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = format('stage_norm.migrate updates each leaf partition itself, with the rights of its caller (%s), which has no SELECT and UPDATE on the column of: %s.', current_user, v_noright),
                  HINT = format('GRANT SELECT, UPDATE (%I) ON each of them TO %I (rights on the parent do not reach a statement that names a partition), or run it as the owner.', col, current_user);
    END IF;
    -- A Citus table: the same procedure on each shard placement, on the node that holds it
    -- (docs/scaling.md); each shard keeps its own run, batches and undo there.
    IF stage_norm._citus_table(tbl) IN ('distributed', 'reference') THEN
        PERFORM stage_norm._citus_migrate(tbl, col, format('batch_size => %s, pause_ms => %s, max_batches => %s, keep_undo => %s, '
                                                           'lock_timeout_ms => %s, max_lock_retries => %s, max_replica_lag => %s, tenant => %s',
                                                           batch_size, pause_ms, coalesce(max_batches::text, 'NULL'), CASE WHEN keep_undo THEN 'true' ELSE 'false' END,
                                                           lock_timeout_ms, max_lock_retries, coalesce(quote_literal(max_replica_lag), 'NULL'),
                                                           coalesce(quote_literal(tenant), 'NULL')));
        RETURN;
    END IF;
    SELECT k.cols INTO v_keys FROM stage_norm._primary_key(tbl) k;
    IF tenant IS NOT NULL THEN
        v_tentype := stage_norm._tenant_column(tbl, col, tenant, 'migrate');
    END IF;

    -- One run at a time per (table, column): a session-level advisory lock, which a COMMIT does
    -- not release (a transaction-level one would be gone after the first batch); released on
    -- every exit below, and by the server when the session ends.
    v_lock := stage_norm._migrate_lock_key(tbl, col);
    IF NOT pg_try_advisory_lock(v_lock) THEN
        SELECT l.pid INTO v_holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ((v_lock >> 32) & 4294967295)::oid
           AND l.objid = (v_lock & 4294967295)::oid AND l.objsubid = 1 LIMIT 1;
        RAISE EXCEPTION 'stage_norm.migrate is already running on column "%" of %', col, v_tblname
            USING ERRCODE = 'object_in_use',
                  DETAIL = coalesce(format('Run %s, in backend %s.',
                      (SELECT r.run_id FROM stage_norm.migration_runs r WHERE r.relid = tbl AND r.column_name = col AND r.status = 'running' ORDER BY r.run_id DESC LIMIT 1),
                      v_holder), ''),
                  HINT = CASE WHEN (SELECT a.state FROM pg_stat_activity a WHERE a.pid = v_holder) = 'idle'
                              THEN format('Backend %s holds it but runs nothing (a call of it was interrupted): resume from that session, or end it with pg_terminate_backend(%s).', v_holder, v_holder)
                              ELSE 'Wait for it (SELECT * FROM stage_norm.migration_progress), or stop it with pg_cancel_backend(pid); a later call resumes where it stopped.' END;
    END IF;

    -- Resume the unfinished run on this column, or start one.
    SELECT * INTO v_run FROM stage_norm.migration_runs r
     WHERE r.relid = tbl AND r.column_name = col AND r.status IN ('running', 'paused', 'failed')
     ORDER BY r.run_id DESC LIMIT 1;
    IF FOUND THEN
        IF v_run.key_columns <> v_keys THEN
            PERFORM stage_norm._migrate_unlock(v_lock);
            RAISE EXCEPTION 'the primary key of % changed since run % started', v_tblname, v_run.run_id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('Mark it failed for good (UPDATE stage_norm.migration_runs SET status = ''finished'' WHERE run_id = %s) and start again; a second pass updates only what is left.', v_run.run_id);
        END IF;
        -- A run resumes the way it started: tenant by tenant or not.
        IF tenant IS DISTINCT FROM v_run.tenant_column AND tenant IS NOT NULL THEN
            PERFORM stage_norm._migrate_unlock(v_lock);
            RAISE EXCEPTION 'run % on %.% walks %', v_run.run_id, v_tblname, col,
                            coalesce('by tenant ' || quote_ident(v_run.tenant_column), 'without a tenant column')
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'An unfinished run resumes where it stopped, in the order it started with.',
                      HINT = format('Call it with tenant => %s (or without tenant), or finish it first.', coalesce(quote_literal(v_run.tenant_column), 'NULL'));
        END IF;
        v_tencol := v_run.tenant_column;
        IF v_tencol IS NOT NULL THEN
            SELECT format_type(a.atttypid, a.atttypmod) INTO v_tentype
              FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = v_tencol AND a.attnum > 0 AND NOT a.attisdropped;
        END IF;
        UPDATE stage_norm.migration_runs r SET status = 'running', pid = pg_backend_pid(), last_error = NULL,
               updated_at = clock_timestamp()
         WHERE r.run_id = v_run.run_id;
        RAISE NOTICE 'stage_norm.migrate: resuming run % on %.% after % batches (% rows updated)',
            v_run.run_id, v_tblname, col, v_run.batches, v_run.rows_updated;
    ELSE
        v_tencol := tenant;
        INSERT INTO stage_norm.migration_runs (relid, table_name, column_name, column_kind, key_columns, tenant_column, batch_size, keep_undo, pid)
        VALUES (tbl, v_tblname, col, v_kind, v_keys, v_tencol, batch_size, keep_undo, pg_backend_pid())
        RETURNING * INTO v_run;
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE %I IS NULL) FROM %s', col, tbl)
           INTO v_run.rows_before, v_run.nulls_before;
        UPDATE stage_norm.migration_runs r SET rows_before = v_run.rows_before, nulls_before = v_run.nulls_before
         WHERE r.run_id = v_run.run_id;
        RAISE NOTICE 'stage_norm.migrate: run % on %.% (%): % rows, batches of %',
            v_run.run_id, v_tblname, col, v_kind, v_run.rows_before,
            batch_size || CASE WHEN v_tencol IS NOT NULL THEN format(', tenant by tenant (%I)', v_tencol) ELSE '' END;
    END IF;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

    -- Partition by partition (in OID order), or the table itself.
    SELECT coalesce(array_agg(p.relid ORDER BY p.relid), ARRAY[tbl::oid]) INTO v_leaves
      FROM pg_partition_tree(tbl) p WHERE p.isleaf;
    FOREACH v_leaf IN ARRAY v_leaves LOOP
        -- Done before: the partitions before the cursor's, and the cursor's when walked to its
        -- end (cursor_key NULL; a tenant run then goes on with the next tenant).
        CONTINUE WHEN v_leaf < v_run.cursor_relid;
        v_resume := coalesce(v_leaf = v_run.cursor_relid, false);
        CONTINUE WHEN v_tencol IS NULL AND v_resume AND v_run.cursor_key IS NULL;
        v_first := true;
        LOOP   -- the partition's tenants in order, then its NULL tenant (not a tenant run: once)
            IF v_tencol IS NULL THEN
                EXIT WHEN NOT v_first;
                v_cursor := CASE WHEN v_resume THEN v_run.cursor_key END;
            ELSE
                IF v_first AND v_resume AND v_run.cursor_key IS NOT NULL THEN
                    v_group := v_run.cursor_tenant;      -- in the middle of a tenant
                    v_cursor := v_run.cursor_key;
                ELSE
                    PERFORM stage_norm._migrate_pin_formats();
                    v_group := stage_norm._migrate_next_tenant(v_leaf::regclass, v_tencol, v_tentype,
                                   CASE WHEN NOT v_first THEN v_group WHEN v_resume THEN v_run.cursor_tenant END);
                    v_cursor := NULL;
                END IF;
                EXIT WHEN v_group IS NULL;
            END IF;
            v_first := false;
            v_size := batch_size;
            LOOP
                IF max_batches IS NOT NULL AND v_done >= max_batches THEN
                    v_stop := true;
                    EXIT;
                END IF;
                -- Standbys first: wait while any streams more than max_replica_lag behind.
                IF max_replica_lag IS NOT NULL THEN
                    LOOP
                        -- A standby that has replayed everything flushed here lags nothing, whatever
                    -- its last reported lag (which stays until its next status message).
                    SELECT max(greatest(s.write_lag, s.flush_lag, s.replay_lag)) INTO v_lag FROM pg_stat_replication s
                     WHERE s.replay_lsn IS NULL OR s.replay_lsn < pg_current_wal_flush_lsn();
                        EXIT WHEN v_lag IS NULL OR v_lag <= max_replica_lag;
                        RAISE NOTICE 'stage_norm.migrate: run %: a standby lags % (more than %), waiting', v_run.run_id, v_lag, max_replica_lag;
                        IF NOT stage_norm._migrate_sleep(least(greatest(extract(epoch FROM v_lag) / 4, 0.1), 5)) THEN
                            PERFORM stage_norm._migrate_stop(v_run.run_id, v_lock, '57014: canceled while waiting for a standby');
                            COMMIT;
                            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                            RAISE EXCEPTION 'stage_norm.migrate: run % canceled while waiting for a standby', v_run.run_id
                                USING ERRCODE = 'query_canceled', HINT = 'CALL stage_norm.migrate again to resume.';
                        END IF;
                    END LOOP;
                END IF;
                v_attempts := 0;
                v_fatal := false;
                LOOP   -- attempts of one batch
                    v_attempts := v_attempts + 1;
                    v_err_state := NULL;
                    v_t0 := clock_timestamp();
                    v_saved := v_run;
                    BEGIN
                        PERFORM set_config('lock_timeout', lock_timeout_ms || 'ms', true);
                        PERFORM stage_norm._migrate_pin_formats();
                        -- A batch's bookkeeping commits with it, so a batch lost in a crash is
                        -- redone on resume: it need not wait for its WAL to be flushed.
                        PERFORM set_config('synchronous_commit', 'off', true);
                        -- The batch's rewrites are not the application's writes: not counted.
                        PERFORM stage_norm._migrate_uncounted(tbl, col);
                        SELECT m.rows_scanned, m.rows_updated, m.key_to INTO v_scanned, v_updated, v_to
                          FROM stage_norm._migrate_batch(v_run.run_id, v_run.batches + 1, v_leaf::regclass, v_group[1], v_cursor, v_size) m;
                        -- The batch's bookkeeping, in its transaction (and under its error handler).
                        v_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
                        v_run.batches := v_run.batches + 1;   -- (undone below if this block fails)
                        v_run.rows_scanned := v_run.rows_scanned + v_scanned;
                        v_run.rows_updated := v_run.rows_updated + v_updated;
                        INSERT INTO stage_norm.migration_batches (run_id, batch, relid, tenant, key_from, key_to, rows_scanned, rows_updated, duration_ms, attempts, status)
                        VALUES (v_run.run_id, v_run.batches, v_leaf, v_group[1], v_cursor, v_to, v_scanned, v_updated, v_ms, v_attempts, 'done')
                        ON CONFLICT (run_id, batch) DO UPDATE
                           SET relid = EXCLUDED.relid, tenant = EXCLUDED.tenant, key_from = EXCLUDED.key_from, key_to = EXCLUDED.key_to, rows_scanned = EXCLUDED.rows_scanned,
                               rows_updated = EXCLUDED.rows_updated, duration_ms = EXCLUDED.duration_ms,
                               attempts = stage_norm.migration_batches.attempts + EXCLUDED.attempts, status = 'done', finished_at = EXCLUDED.finished_at;
                        UPDATE stage_norm.migration_runs r
                           SET batches = v_run.batches, rows_scanned = v_run.rows_scanned, rows_updated = v_run.rows_updated,
                               cursor_relid = v_leaf, cursor_tenant = v_group, cursor_key = v_to,
                               updated_at = clock_timestamp()
                         WHERE r.run_id = v_run.run_id;
                        v_eta := CASE WHEN v_run.rows_before > v_run.rows_scanned AND v_run.rows_scanned > 0
                                      THEN (date_trunc('second', (clock_timestamp() - v_run.started_at) * ((v_run.rows_before - v_run.rows_scanned)::float8 / v_run.rows_scanned)))::text
                                      ELSE '0' END;
                        RAISE NOTICE 'stage_norm.migrate: run % batch %: % rows scanned, % updated, % ms; % %% done, ETA %',
                            v_run.run_id,
                            v_run.batches || CASE WHEN v_tencol IS NOT NULL THEN format(' (%s %s)', v_tencol, coalesce(v_group[1], 'NULL')) ELSE '' END,
                            v_scanned, v_updated, round(v_ms::numeric, 1),
                            CASE WHEN v_run.rows_before > 0 THEN round(100.0 * least(v_run.rows_scanned, v_run.rows_before) / v_run.rows_before, 1) ELSE 100 END,
                            v_eta;
                    EXCEPTION
                        WHEN lock_not_available THEN
                            v_run := v_saved;
                            v_err_state := '55P03';
                        WHEN deadlock_detected THEN
                            v_run := v_saved;
                            v_err_state := '40P01';
                        WHEN query_canceled OR OTHERS THEN
                            v_run := v_saved;
                            GET STACKED DIAGNOSTICS v_err_state = RETURNED_SQLSTATE, v_err_msg = MESSAGE_TEXT,
                                                    v_err_detail = PG_EXCEPTION_DETAIL, v_err_hint = PG_EXCEPTION_HINT;
                    END;
                    EXIT WHEN v_err_state IS NULL;
                    IF v_err_state IN ('55P03', '40P01') AND v_attempts <= max_lock_retries THEN
                        -- Row locks held elsewhere: back off, and split the batch after every third try.
                        UPDATE stage_norm.migration_runs r SET lock_retries = r.lock_retries + 1, updated_at = clock_timestamp()
                         WHERE r.run_id = v_run.run_id;
                        IF v_attempts % 3 = 0 AND v_size > 1 THEN
                            v_size := greatest(v_size / 2, 1);
                        END IF;
                        RAISE NOTICE 'stage_norm.migrate: run %: batch % could not lock its rows within % ms (attempt %); retrying with % rows',
                            v_run.run_id, v_run.batches + 1, lock_timeout_ms, v_attempts, v_size;
                        COMMIT;
                        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                        IF NOT stage_norm._migrate_sleep(least(0.05 * 2 ^ least(v_attempts, 7), 5)) THEN
                            v_err_state := '57014';
                            v_err_msg := 'canceled while backing off';
                        ELSE
                            CONTINUE;
                        END IF;
                    END IF;
                    -- Anything else (or too many lock timeouts): the run stops, resumable.
                    v_fatal := true;
                    EXIT;
                END LOOP;
                IF v_fatal THEN
                    IF v_err_state = '55P03' THEN
                        v_err_msg := format('batch %s could not lock its rows after %s attempts of %s ms', v_run.batches + 1, v_attempts, lock_timeout_ms);
                    END IF;
                    INSERT INTO stage_norm.migration_batches (run_id, batch, relid, tenant, key_from, key_to, rows_scanned, rows_updated, duration_ms, attempts, status)
                    VALUES (v_run.run_id, v_run.batches + 1, v_leaf, v_group[1], v_cursor, v_to, 0, 0,
                            extract(epoch FROM clock_timestamp() - v_t0) * 1000, v_attempts, 'failed')
                    ON CONFLICT (run_id, batch) DO UPDATE SET attempts = EXCLUDED.attempts, status = 'failed', finished_at = EXCLUDED.finished_at;
                    PERFORM stage_norm._migrate_stop(v_run.run_id, v_lock, v_err_state || ': ' || v_err_msg);
                    COMMIT;
                    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                    RAISE EXCEPTION 'stage_norm.migrate: run % stopped: %', v_run.run_id, v_err_msg
                        USING ERRCODE = v_err_state,
                              DETAIL = coalesce(v_err_detail || ' ', '') || format('Every batch before batch %s is committed.', v_run.batches + 1),
                              HINT = coalesce(v_err_hint || ' ', '') || 'CALL stage_norm.migrate again with the same table and column to resume.';
                END IF;
                COMMIT;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                v_done := v_done + 1;
                v_size := batch_size;
                EXIT WHEN v_to IS NULL;          -- the last batch of this partition (or of this tenant in it)
                v_cursor := v_to;
                IF pause_ms > 0 AND NOT stage_norm._migrate_sleep(pause_ms / 1000.0) THEN
                    PERFORM stage_norm._migrate_stop(v_run.run_id, v_lock, '57014: canceled between batches');
                    COMMIT;
                    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
                    RAISE EXCEPTION 'stage_norm.migrate: run % canceled between batches', v_run.run_id
                        USING ERRCODE = 'query_canceled', DETAIL = format('Batches 1 to %s are committed.', v_run.batches),
                              HINT = 'CALL stage_norm.migrate again to resume.';
                END IF;
            END LOOP;
            EXIT WHEN v_stop;
        END LOOP;
        EXIT WHEN v_stop;
    END LOOP;

    IF v_stop THEN
        UPDATE stage_norm.migration_runs r SET status = 'paused', pid = NULL, updated_at = clock_timestamp()
         WHERE r.run_id = v_run.run_id;
        RAISE NOTICE 'stage_norm.migrate: run % paused after % batches (max_batches); CALL it again to continue', v_run.run_id, v_done;
    ELSE
        -- The verifier's summary in the same scan as the final row count (the whole verify
        -- report, per stage and most frequent values, is one call away), and the unknown values
        -- the run left (normalized only where not canonical); per tenant for tenant runs.
        EXECUTE format('SELECT count(*), count(*) FILTER (WHERE t._sn_v IS NULL), count(*) FILTER (WHERE t._sn_bad), count(*) FILTER (WHERE t._sn_bad AND %1$s) '
                       'FROM (SELECT t.%2$I AS _sn_v, %3$s AS _sn_bad FROM %4$s t OFFSET 0) t',
                       format(stage_norm._migrate_sql(v_kind, 'unknown'), 't._sn_v', format(stage_norm._migrate_sql(v_kind, 'normalize'), 't._sn_v')),
                       col, format(stage_norm._migrate_sql(v_kind, 'bad'), format('t.%I', col)), tbl)
           INTO v_run.rows_after, v_run.nulls_after, v_bad, v_run.rows_unknown;
        UPDATE stage_norm.migration_runs r
           SET status = 'finished', finished_at = clock_timestamp(), updated_at = clock_timestamp(), pid = NULL,
               rows_after = v_run.rows_after, nulls_after = v_run.nulls_after, rows_unknown = v_run.rows_unknown, cursor_key = NULL
         WHERE r.run_id = v_run.run_id;
        IF v_tencol IS NOT NULL THEN
            v_summary := stage_norm.verify(tbl, col, v_tencol);
        END IF;
        RAISE NOTICE 'stage_norm.migrate: run % finished: % rows updated, % unknown left as they were; verify: % rows, % NULL, % not canonical%',
            v_run.run_id, v_run.rows_updated, v_run.rows_unknown,
            v_run.rows_after, v_run.nulls_after, v_bad,
            CASE WHEN v_tencol IS NOT NULL THEN
                (SELECT format(' (%s tenants, %s of them with values left)', count(*), count(*) FILTER (WHERE (e.value->>'non_canonical')::bigint > 0))
                   FROM jsonb_each(v_summary->'tenants') e) ELSE '' END;
    END IF;
    PERFORM stage_norm._migrate_unlock(v_lock);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
END
$$;
COMMENT ON PROCEDURE stage_norm.migrate(regclass, name, int, int, int, boolean, int, int, interval, name) IS
    'Normalizes the existing values of a governed column in primary-key batches (tenant by tenant with tenant => ...), one COMMIT each; resumable, reversible (keep_undo), one run per column at a time';

-- How many undo rows of a run's committed batches are left, whatever the caller may see (a
-- count only): rollback_migration marks a run rolled back only when none is.
CREATE FUNCTION stage_norm._undo_left(run_id bigint)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM stage_norm.migration_undo u
     WHERE u.run_id OPERATOR(pg_catalog.=) _undo_left.run_id
       AND EXISTS (SELECT FROM stage_norm.migration_batches b
                    WHERE b.run_id OPERATOR(pg_catalog.=) u.run_id AND b.batch OPERATOR(pg_catalog.=) u.batch
                      AND b.relid::oid OPERATOR(pg_catalog.=) u.relid::oid AND b.status OPERATOR(pg_catalog.=) 'done')
$$;
COMMENT ON FUNCTION stage_norm._undo_left(bigint) IS
    'Internal: undo rows of a run''s committed batches still in migration_undo (rollback_migration)';

CREATE PROCEDURE stage_norm.rollback_migration(run_id bigint, batch_size int DEFAULT 5000)
LANGUAGE plpgsql
-- No SET clause: a procedure with one cannot COMMIT. It runs with its caller's rights and
-- search_path; PostgreSQL looks in pg_catalog first, and every name of ours is qualified.
AS $$
DECLARE
    v_run      stage_norm.migration_runs;
    v_types    text[];
    v_keys     name[];
    v_coltype  text;
    v_match    text;
    v_batch    int;
    v_leaf     oid;
    v_renorm   text;
    v_written  text;
    v_ignored  bigint;
    v_held     bigint; v_already bigint; v_all_held bigint := 0; v_left bigint;
    v_total    bigint; v_restored bigint; v_all_total bigint := 0; v_all_restored bigint := 0;
    v_checks   text;
    v_drops    text;
BEGIN
    -- Every name and operator below resolves in pg_catalog only, whatever the caller's search_path
    -- (a procedure that COMMITs cannot have a SET clause): pinned for this transaction here and
    -- again after every COMMIT; the caller's path is back when the CALL's transaction ends.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF run_id IS NULL OR batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'stage_norm.rollback_migration: run_id must not be NULL and batch_size must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF stage_norm._in_transaction_block() THEN
        RAISE EXCEPTION 'stage_norm.rollback_migration cannot run inside a transaction block'
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'It commits after every batch of restored rows.',
                  HINT = 'Run it on its own, outside BEGIN ... COMMIT.';
    END IF;
    SELECT * INTO v_run FROM stage_norm.migration_runs r WHERE r.run_id = rollback_migration.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stage_norm.rollback_migration: no run %', run_id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM stage_norm.migration_runs lists the runs.';
    END IF;
    IF v_run.status = 'running' AND v_run.pid IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = v_run.pid) THEN
        RAISE EXCEPTION 'run % is still running (backend %)', run_id, v_run.pid
            USING ERRCODE = 'object_in_use', HINT = 'Stop it first: SELECT pg_cancel_backend(pid).';
    END IF;
    IF v_run.status = 'rolled back' THEN
        RAISE NOTICE 'stage_norm.rollback_migration: run % was rolled back already (% rows restored, % changed since and left)',
            run_id, v_run.rows_restored, v_run.rows_conflicting;
        RETURN;
    END IF;
    IF v_run.undo_purged > 0 THEN
        RAISE EXCEPTION 'run %''s undo data was purged (% original values)', run_id, v_run.undo_purged
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Rolling back the rest would leave the table half migrated, half restored.',
                  HINT = 'The purged values can only come from a backup.';
    END IF;
    IF NOT v_run.keep_undo THEN
        RAISE EXCEPTION 'run % kept no undo data (keep_undo => false)', run_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its original values can only come from a backup.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = v_run.relid) THEN
        RAISE EXCEPTION 'the table of run % (%) no longer exists', run_id, v_run.table_name
            USING ERRCODE = 'undefined_table';
    END IF;
    -- The original values are what enforcement changes: writing them back needs the trigger
    -- out of the way, which only whoever may set stage_norm.max_mode may do.
    IF NOT has_parameter_privilege('stage_norm.max_mode', 'SET') THEN
        RAISE EXCEPTION 'permission denied to roll back run %', run_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Rolling back writes the original (non-canonical) values, with stage_norm.max_mode = off for its own transactions.',
                  HINT = format('A superuser can GRANT SET ON PARAMETER stage_norm.max_mode TO %I.', current_user);
    END IF;
    -- The original values are not canonical: a CHECK that proves the column canonical (add_check's)
    -- refuses them, and the first batch failed with 23514 and a long context (#28). Said first,
    -- with the statements that make the rollback possible.
    SELECT string_agg(format('%I on %s', c.conname, c.conrelid::regclass), ', ' ORDER BY c.conrelid, c.conname),
           string_agg(format('ALTER TABLE %s DROP CONSTRAINT %I;', c.conrelid::regclass, c.conname), ' ' ORDER BY c.conrelid, c.conname)
      INTO v_checks, v_drops
      FROM pg_constraint c
     WHERE c.contype = 'c' AND c.conislocal
       AND c.conrelid IN (SELECT p.relid FROM pg_partition_tree(v_run.relid) p UNION SELECT v_run.relid)
       AND EXISTS (SELECT FROM pg_attribute a
                    WHERE a.attrelid = c.conrelid AND a.attname = v_run.column_name AND a.attnum = ANY (c.conkey))
       AND EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_constraint'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_proc'::regclass
                      AND d.refobjid IN ('stage_norm.is_canonical_stage(text)'::regprocedure,
                                         'stage_norm.is_valid_stage_distribution(jsonb)'::regprocedure,
                                         'stage_norm.is_canonical_stage_array(text[])'::regprocedure));
    IF v_checks IS NOT NULL THEN
        RAISE EXCEPTION 'run % cannot be rolled back while a CHECK proves column "%" canonical', run_id, v_run.column_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Rolling back writes the original values, which are not canonical: %s would refuse them.', v_checks),
                  HINT = format('Drop the constraint first (%s), roll back, and add it again with stage_norm.add_check once the column is canonical again.', v_drops);
    END IF;
    SELECT k.cols, k.types INTO v_keys, v_types FROM stage_norm._primary_key(v_run.relid) k;
    SELECT format_type(a.atttypid, a.atttypmod) INTO v_coltype
      FROM pg_attribute a WHERE a.attrelid = v_run.relid AND a.attname = v_run.column_name;
    SELECT string_agg(format('t.%I = u.keys[u.n][%s]::%s', k, o, v_types[o]), ' AND ' ORDER BY o) INTO v_match
      FROM unnest(v_keys) WITH ORDINALITY AS x(k, o);
    -- Only what migrate wrote is put back (the undo table is writable by migrating roles, and
    -- this writes past enforcement): undo rows of the run's committed batches, of its table or
    -- its partitions (_run_table, the rule of the tables' row security), and of each row only
    -- when its new value is what migrate makes of its old value under the current configuration.
    SELECT count(*) INTO v_ignored FROM stage_norm.migration_undo u
     WHERE u.run_id = v_run.run_id
       AND (NOT stage_norm._run_table(u.run_id, u.relid)
            OR NOT EXISTS (SELECT FROM stage_norm.migration_batches b
                            WHERE b.run_id = u.run_id AND b.batch = u.batch AND b.relid = u.relid AND b.status = 'done'));
    IF v_ignored > 0 THEN
        RAISE WARNING 'stage_norm.rollback_migration: run %: % undo rows ignored', v_run.run_id, v_ignored
            USING DETAIL = 'They name no committed batch of the run, or a table that is not the run''s table or one of its partitions: migrate did not write them.',
                  HINT = 'SELECT batch, relid FROM stage_norm.migration_undo WHERE run_id = ' || v_run.run_id || ' shows them.';
    END IF;
    -- What migrate wrote into a row: the normalization of its old value, when that changes it
    -- (migrate's own predicate: not NULL; arrays: no element lost).
    v_renorm := format(stage_norm._migrate_sql(v_run.column_kind, 'normalize'), format('x.old::%s', v_coltype));
    v_written := format('(x.new IS NOT NULL AND (%s)::text IS NOT DISTINCT FROM x.new AND %s)',
                        v_renorm, format(stage_norm._migrate_sql(v_run.column_kind, 'changes'), format('x.old::%s', v_coltype), v_renorm));
    -- Batch by batch of the run, newest first (each undo batch is one key range of one table).
    FOR v_batch, v_leaf IN
        SELECT DISTINCT u.batch, u.relid FROM stage_norm.migration_undo u
         WHERE u.run_id = v_run.run_id
           AND stage_norm._run_table(u.run_id, u.relid)
           AND EXISTS (SELECT FROM stage_norm.migration_batches b
                        WHERE b.run_id = u.run_id AND b.batch = u.batch AND b.relid = u.relid AND b.status = 'done')
         ORDER BY 1 DESC
    LOOP
        PERFORM set_config('stage_norm.max_mode', 'off', true);
        PERFORM stage_norm._migrate_pin_formats();
        -- Each row of the batch is restored (it still holds what the run wrote), already restored
        -- (an earlier rollback left this batch), held (it holds what the run wrote, but that is not
        -- what migrate makes of its old value now: the aliases or the stage set changed since, or
        -- migrate did not write it), or changed since (left alone).
        EXECUTE format($q$
            WITH u AS (SELECT m.keys, x.old, x.new, x.n, %6$s AS _sn_written
                         FROM stage_norm.migration_undo m, unnest(m.old_values, m.new_values) WITH ORDINALITY AS x(old, new, n)
                        WHERE m.run_id = $1 AND m.batch = $2 AND m.relid = $3),
            cur AS (SELECT u.n, u._sn_written, t.%2$I IS NOT DISTINCT FROM u.new::%3$s AS _sn_holds_new,
                           t.%2$I IS NOT DISTINCT FROM u.old::%3$s AS _sn_holds_old
                      FROM u JOIN %1$s t ON %4$s),
            done AS (
                UPDATE %1$s t SET %2$I = u.old::%3$s
                  FROM u
                 WHERE %4$s AND t.%2$I IS NOT DISTINCT FROM u.new::%3$s AND u._sn_written
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM done),
                   (SELECT count(*) FROM cur WHERE _sn_holds_new AND NOT _sn_written),
                   (SELECT count(*) FROM cur WHERE _sn_holds_old AND NOT _sn_holds_new)$q$,
            v_leaf::regclass, v_run.column_name, v_coltype, v_match, v_renorm, v_written)
           INTO v_total, v_restored, v_held, v_already USING v_run.run_id, v_batch, v_leaf;
        IF v_held = 0 THEN
            DELETE FROM stage_norm.migration_undo u WHERE u.run_id = v_run.run_id AND u.batch = v_batch AND u.relid = v_leaf;
        ELSE
            v_all_held := v_all_held + v_held;
            RAISE WARNING 'stage_norm.rollback_migration: run % batch %: % rows hold what the run wrote, but their original value does not normalize to it now: left as they are, with the batch''s undo data',
                v_run.run_id, v_batch, v_held
                USING DETAIL = 'The aliases or the stage set changed since the run (or the undo row was not written by migrate); the rollback writes past enforcement, so it restores only values it can tell migrate wrote.';
        END IF;
        v_all_restored := v_all_restored + v_restored;
        UPDATE stage_norm.migration_runs r SET rows_restored = coalesce(r.rows_restored, 0) + v_restored,
               rows_conflicting = coalesce(r.rows_conflicting, 0) + (v_total - v_restored - v_held - v_already),
               updated_at = clock_timestamp()
         WHERE r.run_id = v_run.run_id;
        IF v_total - v_restored - v_held - v_already > 0 THEN
            RAISE WARNING 'stage_norm.rollback_migration: run % batch %: % rows changed since the run were left as they are',
                v_run.run_id, v_batch, v_total - v_restored - v_held - v_already;
        END IF;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
    -- Done only when no undo data of the run's committed batches is left: kept above, or not
    -- visible to this role (row security: e.g. of a partition detached since the run).
    v_left := stage_norm._undo_left(v_run.run_id);
    IF v_left > 0 THEN
        UPDATE stage_norm.migration_runs r SET updated_at = clock_timestamp(), pid = NULL WHERE r.run_id = v_run.run_id;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        RAISE WARNING 'stage_norm.rollback_migration: run % partly rolled back: % rows restored now; % undo rows of its batches are left', v_run.run_id, v_all_restored, v_left
            USING DETAIL = CASE WHEN v_all_held > 0 THEN format('%s rows hold what the run wrote but were not restored (see the warnings above).', v_all_held)
                                ELSE 'Undo rows this role cannot see, or of tables that are no longer the run''s table or its partitions (a partition detached since the run?).' END,
                  HINT = CASE WHEN v_all_held > 0 THEN format('Put the aliases and the stage set back as they were during the run, then CALL stage_norm.rollback_migration(%s) again: it restores what is left and leaves the rest.', v_run.run_id)
                              ELSE format('A superuser sees them: SELECT batch, relid FROM stage_norm.migration_undo WHERE run_id = %s; attach the partition back, then roll back again.', v_run.run_id) END;
        RETURN;
    END IF;
    UPDATE stage_norm.migration_runs r SET status = 'rolled back', updated_at = clock_timestamp(), pid = NULL,
           rows_restored = coalesce(r.rows_restored, 0) , rows_conflicting = coalesce(r.rows_conflicting, 0)
     WHERE r.run_id = v_run.run_id;
    SELECT r.rows_restored, r.rows_conflicting INTO v_all_restored, v_all_total FROM stage_norm.migration_runs r WHERE r.run_id = v_run.run_id;
    RAISE NOTICE 'stage_norm.rollback_migration: run % rolled back: % rows restored, % changed since and left as they are',
        v_run.run_id, v_all_restored, v_all_total;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
END
$$;
COMMENT ON PROCEDURE stage_norm.rollback_migration(bigint, int) IS
    'Puts back the original values a run of stage_norm.migrate changed (keep_undo), batch by batch; rows changed since are reported, not clobbered';

-- rollback_column_migration on a Citus distributed or reference table, from the coordinator:
-- the same call on every shard placement, one top-level statement each (see _citus_migrate).
CREATE FUNCTION stage_norm._citus_rollback(tbl regclass, col name, batch_size int)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_cmd text;
    r     record;
    v_bad text[] := '{}'::text[];
    v_n   int := 0;
BEGIN
    -- Citus fills %L with each placement's shard (see _citus_migrate).
    v_cmd := format('CALL stage_norm.rollback_column_migration(%%L, %s, %s)', replace(quote_literal(col), '%', '%%'), batch_size);
    FOR r IN EXECUTE 'SELECT nodename, nodeport, shardid, success, result FROM pg_catalog.run_command_on_placements($1, $2, false) ORDER BY shardid, nodeport'
               USING tbl, v_cmd LOOP
        v_n := v_n + 1;
        IF NOT r.success THEN
            v_bad := v_bad || format('shard %s on %s:%s: %s', r.shardid, r.nodename, r.nodeport, r.result);
        END IF;
    END LOOP;
    IF cardinality(v_bad) > 0 THEN
        RAISE EXCEPTION 'stage_norm.rollback_column_migration: % of % shard placements of % failed', cardinality(v_bad), v_n, tbl
            USING ERRCODE = 'external_routine_exception',
                  DETAIL = array_to_string(v_bad, E'\n'),
                  HINT = 'The others are rolled back. CALL it again: a shard already rolled back has nothing left to do.';
    END IF;
    RAISE NOTICE 'stage_norm.rollback_column_migration: % shard placements of % rolled back', v_n, tbl;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_rollback(regclass, name, int) IS
    'Internal: rollback_column_migration on every shard placement of a Citus table';

-- Rolls back every run of a column that changed rows, newest first (what the runbook's step 4
-- did with \gexec), in one call. On a Citus distributed or reference table the runs are the
-- shards', each on its node: called on the coordinator it runs itself on every shard placement
-- through run_command_on_placements (a session Citus shows its shards to; a worker's ordinary
-- session does not see them, so rollback_migration(run_id) there found no table), as migrate
-- does. No SET clause: it COMMITs (through rollback_migration).
CREATE PROCEDURE stage_norm.rollback_column_migration(tbl regclass, col name, batch_size int DEFAULT 5000)
LANGUAGE plpgsql
AS $$
DECLARE
    v_runs  bigint[];
    v_run   bigint;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF tbl IS NULL OR col IS NULL OR batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'stage_norm.rollback_column_migration: tbl and col must not be NULL and batch_size must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM stage_norm._check_relation(tbl, false);
    IF stage_norm._citus_table(tbl) IN ('distributed', 'reference') THEN
        PERFORM stage_norm._citus_rollback(tbl, col, batch_size);
        RETURN;
    END IF;
    v_runs := ARRAY(SELECT r.run_id FROM stage_norm.migration_runs r
                     WHERE r.relid = tbl AND r.column_name = col AND r.status <> 'rolled back' AND r.rows_updated > 0
                     ORDER BY r.run_id DESC);
    FOREACH v_run IN ARRAY v_runs LOOP
        CALL stage_norm.rollback_migration(v_run, batch_size);
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
    RAISE NOTICE 'stage_norm.rollback_column_migration: % run(s) of %.% rolled back', cardinality(v_runs), tbl, col;
END
$$;
COMMENT ON PROCEDURE stage_norm.rollback_column_migration(regclass, name, int) IS
    'Rolls back every run of a column that changed rows, newest first; on a Citus table, on every shard placement from the coordinator';

CREATE FUNCTION stage_norm.purge_migration_undo(run_id bigint DEFAULT NULL, older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF (run_id IS NULL) = (older_than IS NULL) THEN
        RAISE EXCEPTION 'stage_norm.purge_migration_undo: name exactly one of a run (run_id) and an age (older_than)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM stage_norm.migration_runs r WHERE r.run_id = purge_migration_undo.run_id) THEN
        RAISE EXCEPTION 'stage_norm.purge_migration_undo: no run %', run_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT * FROM stage_norm.migration_runs lists the runs you may see (row security: the runs on columns you may read and update).';
    END IF;
    IF run_id IS NOT NULL AND EXISTS (SELECT 1 FROM stage_norm.migration_runs r
                                       WHERE r.run_id = purge_migration_undo.run_id AND r.status IN ('running', 'paused', 'failed')) THEN
        RAISE EXCEPTION 'run % is not finished', run_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Its undo data is what rollback_migration needs, and the run may still add to it.',
                  HINT = 'Finish it (CALL stage_norm.migrate again) or roll it back first.';
    END IF;
    WITH d AS (
        DELETE FROM stage_norm.migration_undo u
         USING stage_norm.migration_runs r
         WHERE u.run_id = r.run_id
           AND (r.run_id = purge_migration_undo.run_id
                OR (purge_migration_undo.run_id IS NULL AND r.status IN ('finished', 'rolled back')
                    AND coalesce(r.finished_at, r.updated_at) < clock_timestamp() - older_than))
        RETURNING u.run_id, cardinality(u.old_values) AS values
    ), runs AS (
        UPDATE stage_norm.migration_runs r SET undo_purged = r.undo_purged + x.n
          FROM (SELECT d.run_id, sum(d.values) AS n FROM d GROUP BY 1) x
         WHERE r.run_id = x.run_id AND r.status <> 'rolled back'
    )
    SELECT coalesce(sum(d.values), 0) INTO n FROM d;
    RETURN n;
END
$$;
COMMENT ON FUNCTION stage_norm.purge_migration_undo(bigint, interval) IS
    'Deletes undo data: of one run, or of finished and rolled-back runs older than an age; returns how many original values were deleted';

-- migrate on a Citus table: CALL stage_norm.migrate on every shard placement, one at a time,
-- each as a top-level statement of its own connection to its node (so it COMMITs per batch there).
-- Refused while the nodes' stage sets or aliases differ: a shard would migrate with others.
CREATE FUNCTION stage_norm._citus_migrate(tbl regclass, col name, options text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_drift text;
    v_cmd   text;
    r       record;
    v_bad   text[] := '{}'::text[];
    v_n     int := 0;
BEGIN
    PERFORM stage_norm._citus_require_setup('migrate on a Citus table');
    SELECT string_agg(format('%s: %s', c.node, c.item), '; ') INTO v_drift
      FROM stage_norm.citus_check() c WHERE NOT c.matches AND c.item IN ('reachable', 'extension version', 'stage set', 'aliases');
    IF v_drift IS NOT NULL THEN
        RAISE EXCEPTION 'stage_norm.migrate: the Citus nodes do not share one configuration'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Differs from the coordinator: %s.', v_drift),
                  HINT = 'SELECT * FROM stage_norm.citus_sync(); then migrate again.';
    END IF;
    -- Citus fills the command with format(command, <the placement's shard, a qualified
    -- identifier>): %L makes it a literal (a quote in a table name cannot end it), and every
    -- other % (in the column's name, a tenant column's, an option) is doubled so that it stays
    -- itself.
    v_cmd := format('CALL stage_norm.migrate(%%L, %s, %s)', replace(quote_literal(col), '%', '%%'), replace(options, '%', '%%'));
    FOR r IN EXECUTE 'SELECT nodename, nodeport, shardid, success, result FROM pg_catalog.run_command_on_placements($1, $2, false) ORDER BY shardid, nodeport'
               USING tbl, v_cmd LOOP
        v_n := v_n + 1;
        IF NOT r.success THEN
            v_bad := v_bad || format('shard %s on %s:%s: %s', r.shardid, r.nodename, r.nodeport, r.result);
        END IF;
    END LOOP;
    IF cardinality(v_bad) > 0 THEN
        RAISE EXCEPTION 'stage_norm.migrate: % of % shard placements of % failed', cardinality(v_bad), v_n, tbl
            USING ERRCODE = 'external_routine_exception',
                  DETAIL = array_to_string(v_bad, E'\n'),
                  HINT = 'The others are done. CALL it again: each shard''s run resumes where it stopped (stage_norm.migration_progress on that shard''s node).';
    END IF;
    RAISE NOTICE 'stage_norm.migrate: % shard placements of % migrated', v_n, tbl
        USING DETAIL = 'Each shard''s run, batches and undo are on its node; stage_norm.verify on the coordinator adds up the shards.';
END
$$;
COMMENT ON FUNCTION stage_norm._citus_migrate(regclass, name, text) IS
    'Internal: stage_norm.migrate on a Citus table, shard placement by shard placement';

-- verify on a Citus table: the last run of every shard placement (on its node), added up.
CREATE FUNCTION stage_norm._citus_last_runs(tbl regclass, col name)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    v_run jsonb;
BEGIN
    EXECUTE 'SELECT jsonb_build_object(''shards'', count(*), ''finished'', count(*) FILTER (WHERE r ->> ''status'' = ''finished''), '
            '       ''statuses'', jsonb_agg(DISTINCT coalesce(r ->> ''status'', ''never run'')), '
            '       ''rows_updated'', sum((r ->> ''rows_updated'')::bigint), ''rows_unknown'', sum((r ->> ''rows_unknown'')::bigint), '
            '       ''row_count_unchanged'', bool_and((r ->> ''rows_before'')::bigint = (r ->> ''rows_after'')::bigint), '
            '       ''no_null_introduced'', bool_and((r ->> ''nulls_after'')::bigint <= (r ->> ''nulls_before'')::bigint)) '
            '  FROM (SELECT CASE WHEN p.success AND p.result <> '''' THEN p.result::jsonb END AS r '
            '          FROM pg_catalog.run_command_on_placements($1, $2, false) p) x'
       INTO v_run
      -- Citus fills %L with the placement's shard as a literal (format(command, shard))
      USING tbl, format('SELECT pg_catalog.row_to_json(r) FROM stage_norm.migration_runs r '
                        'WHERE r.relid::pg_catalog.oid OPERATOR(pg_catalog.=) %%L::pg_catalog.regclass::pg_catalog.oid '
                        'AND r.column_name OPERATOR(pg_catalog.=) %s::pg_catalog.name ORDER BY r.run_id DESC LIMIT 1',
                        replace(quote_literal(col), '%', '%%'));
    RETURN v_run;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_last_runs(regclass, name) IS
    'Internal: the last migrate run of every shard placement of a Citus table, added up (for verify)';

CREATE FUNCTION stage_norm.verify(tbl regclass, col name, tenant name DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_runs_readable boolean := has_table_privilege('stage_norm.migration_runs', 'SELECT')
                               AND has_table_privilege('stage_norm.migration_batches', 'SELECT');
    v_kind   text;
    v_report jsonb;
    v_part   jsonb;
    v_bad    text;       -- "not canonical" for the kind
    v_run    jsonb;
BEGIN
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION 'stage_norm.verify: tbl and col must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_kind := stage_norm._stage_column(tbl, col);
    v_bad := CASE v_kind WHEN 'text' THEN format('NOT stage_norm.is_canonical_stage(%I)', col)
                         WHEN 'jsonb' THEN format('NOT stage_norm.is_valid_stage_distribution(%I)', col)
                         ELSE format('NOT stage_norm.is_canonical_stage_array(%I)', col) END;
    EXECUTE format('SELECT jsonb_build_object(''table'', %L, ''column'', %L, ''kind'', %L, ''rows'', count(*), ''nulls'', count(*) FILTER (WHERE %I IS NULL), ''non_canonical'', count(*) FILTER (WHERE %s)) FROM %s',
                   tbl::text, col, v_kind, col, v_bad, tbl)
       INTO v_report;
    -- Count per canonical stage: values (text), keys (distributions), elements (arrays).
    v_part := NULL;
    IF v_kind = 'text' THEN
        EXECUTE format('SELECT jsonb_object_agg(s, n) FROM (SELECT %1$I::text AS s, count(*) AS n FROM %2$s WHERE stage_norm.is_canonical_stage(%1$I) GROUP BY 1) x', col, tbl) INTO v_part;
    ELSIF v_kind = 'jsonb' THEN
        EXECUTE format('SELECT jsonb_object_agg(s, n) FROM (SELECT k AS s, count(*) AS n FROM %2$s, jsonb_object_keys(%1$I) k WHERE stage_norm.is_valid_stage_distribution(%1$I) GROUP BY 1) x', col, tbl) INTO v_part;
    ELSE
        EXECUTE format('SELECT jsonb_object_agg(s, n) FROM (SELECT e AS s, count(*) AS n FROM %2$s, unnest(%1$I::text[]) e WHERE e IS NOT NULL AND stage_norm.is_canonical_stage(e) GROUP BY 1) x', col, tbl) INTO v_part;
    END IF;
    v_report := v_report || jsonb_build_object('stages', coalesce(v_part, '{}'));
    -- Up to 20 of the most frequent non-canonical values (array columns: elements).
    IF v_kind = 'array' THEN
        EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_object(''value'', v, ''count'', n) ORDER BY n DESC, v), ''[]'') FROM (SELECT e AS v, count(*) AS n FROM %2$s, unnest(%1$I::text[]) e WHERE e IS NOT NULL AND NOT stage_norm.is_canonical_stage(e) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20) x', col, tbl) INTO v_part;
    ELSE
        EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_object(''value'', v, ''count'', n) ORDER BY n DESC, v), ''[]'') FROM (SELECT %1$I::text AS v, count(*) AS n FROM %2$s WHERE %3$s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20) x', col, tbl, v_bad) INTO v_part;
    END IF;
    v_report := v_report || jsonb_build_object('top_non_canonical', v_part);
    IF v_kind = 'jsonb' THEN
        EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_object(''reason'', r, ''count'', n) ORDER BY n DESC, r), ''[]'') FROM (SELECT r, count(*) AS n FROM %2$s, unnest(stage_norm.stage_distribution_errors(%1$I)) r GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20) x', col, tbl) INTO v_part;
        v_report := v_report || jsonb_build_object('invalid_reasons', v_part);
    END IF;
    IF tenant IS NOT NULL THEN
        PERFORM stage_norm._tenant_column(tbl, col, tenant, 'verify');
        EXECUTE format('SELECT jsonb_object_agg(coalesce(t::text, ''NULL''), jsonb_build_object(''rows'', n, ''nulls'', z, ''non_canonical'', b)) FROM (SELECT %1$I AS t, count(*) AS n, count(*) FILTER (WHERE %2$I IS NULL) AS z, count(*) FILTER (WHERE %3$s) AS b FROM %4$s GROUP BY 1) x',
                       tenant, col, v_bad, tbl) INTO v_part;
        -- Each tenant's count per canonical stage, counted as 'stages' is (#28).
        EXECUTE format('SELECT jsonb_object_agg(t, jsonb_build_object(''stages'', st)) FROM ('
                       'SELECT t, jsonb_object_agg(s, n) AS st FROM (SELECT coalesce(f.t::text, ''NULL'') AS t, f.s, count(*) AS n FROM (%s) f GROUP BY 1, 2) g GROUP BY 1) h',
                       CASE v_kind
                           WHEN 'text' THEN format('SELECT %1$I AS t, %2$I::text AS s FROM %3$s WHERE stage_norm.is_canonical_stage(%2$I)', tenant, col, tbl)
                           WHEN 'jsonb' THEN format('SELECT %1$I AS t, k AS s FROM %3$s, jsonb_object_keys(%2$I) k WHERE stage_norm.is_valid_stage_distribution(%2$I)', tenant, col, tbl)
                           ELSE format('SELECT %1$I AS t, e AS s FROM %3$s, unnest(%2$I::text[]) e WHERE e IS NOT NULL AND stage_norm.is_canonical_stage(e)', tenant, col, tbl)
                       END) INTO v_run;
        SELECT jsonb_object_agg(e.key, e.value || coalesce(m.value, jsonb_build_object('stages', '{}'::jsonb)))
          INTO v_part
          FROM jsonb_each(v_part) e LEFT JOIN jsonb_each(v_run) m ON m.key = e.key;
        -- The last run's figures per tenant, when it walked by this column (for a caller who may
        -- read the migration tables: not every reader of the table may).
        v_run := NULL;
        IF v_runs_readable THEN
        SELECT jsonb_object_agg(coalesce(b.tenant, 'NULL'), jsonb_build_object('batches', b.n, 'rows_updated', b.u))
          INTO v_run
          FROM (SELECT b.tenant, count(*) AS n, sum(b.rows_updated) AS u
                  FROM stage_norm.migration_batches b
                 WHERE b.status = 'done' AND b.run_id = (SELECT r.run_id FROM stage_norm.migration_runs r
                                                          WHERE r.relid = tbl AND r.column_name = col AND r.tenant_column = verify.tenant
                                                          ORDER BY r.run_id DESC LIMIT 1)
                 GROUP BY b.tenant) b;
        END IF;
        SELECT jsonb_object_agg(e.key, e.value || CASE WHEN m.value IS NOT NULL THEN jsonb_build_object('last_run', m.value) ELSE '{}' END)
          INTO v_part
          FROM jsonb_each(v_part) e LEFT JOIN jsonb_each(v_run) m ON m.key = e.key;
        v_report := v_report || jsonb_build_object('tenants', coalesce(v_part, '{}'));
    END IF;
    -- The last run (NULL for a caller who may not read it: not granted migration_runs, or its
    -- row security).
    v_run := NULL;
    IF v_runs_readable THEN
    SELECT jsonb_build_object('run_id', r.run_id, 'status', r.status, 'tenant_column', r.tenant_column, 'started_at', r.started_at, 'finished_at', r.finished_at,
                              'rows_updated', r.rows_updated, 'rows_unknown', r.rows_unknown,
                              'rows_before', r.rows_before, 'rows_after', r.rows_after,
                              'nulls_before', r.nulls_before, 'nulls_after', r.nulls_after,
                              'row_count_unchanged', NULL, 'no_null_introduced', NULL,
                              '_undo', r.status = 'finished' AND r.keep_undo AND r.undo_purged = 0)
      INTO v_run
      FROM stage_norm.migration_runs r
     WHERE r.relid = tbl AND r.column_name = col ORDER BY r.run_id DESC LIMIT 1;
    -- The run's own rows (#28): the table's counts before and after include what the
    -- application wrote meanwhile (rows_before/after, nulls_before/after: information), so the
    -- two verdicts read the run's undo instead (keys: one row of key values per changed row): every row it changed is recorded once
    -- (row_count_unchanged: it changed rows_updated rows in place, and added or removed none),
    -- and none of its new values is NULL (no_null_introduced). NULL when that cannot be read: no
    -- undo kept, undo purged or not granted, or the run not finished.
    IF (v_run->>'_undo')::boolean AND has_table_privilege('stage_norm.migration_undo', 'SELECT') THEN
        SELECT v_run || jsonb_build_object('row_count_unchanged', coalesce(sum(array_length(un.keys, 1)), 0) = (v_run->>'rows_updated')::bigint,
                                           'no_null_introduced', NOT EXISTS (SELECT FROM stage_norm.migration_undo u2, unnest(u2.new_values) AS n(v)
                                                                              WHERE u2.run_id = (v_run->>'run_id')::bigint AND n.v IS NULL))
          INTO v_run
          FROM stage_norm.migration_undo un WHERE un.run_id = (v_run->>'run_id')::bigint;
    END IF;
    v_run := v_run - '_undo';
    -- A Citus table's runs are per shard, on the shards' nodes: their last runs added up.
    IF stage_norm._citus_table(tbl) IN ('distributed', 'reference') THEN
        v_run := stage_norm._citus_last_runs(tbl, col);
    END IF;
    END IF;
    RETURN v_report || jsonb_build_object('last_run', v_run);
END
$$;
COMMENT ON FUNCTION stage_norm.verify(regclass, name, name) IS
    'What a governed column holds: rows, NULLs, counts per stage, the most frequent non-canonical values (distributions: reasons), per tenant when asked, and the last migrate run''s figures';

-- The labels of a column that no rule or alias knows (NULL apart), with their counts: what the
-- DBA must alias or fix before enforce (#28). verify's top_non_canonical lists non-canonical
-- values, which before a migration are mostly known variants and hide the unknown ones. Text
-- columns: the values; stage arrays: the unknown elements; distributions: the unknown keys.
-- With tenant, per tenant (the tenant's value as text, 'NULL' for NULL). Runs as the caller,
-- who needs SELECT on the columns.
CREATE FUNCTION stage_norm.unknown_labels(tbl regclass, col name, tenant name DEFAULT NULL)
RETURNS TABLE (tenant_value text, label text, row_count bigint)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind   text;
    v_labels text;
    v_tenant text := 'NULL::text';
BEGIN
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION 'stage_norm.unknown_labels: tbl and col must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_kind := stage_norm._stage_column(tbl, col);
    IF tenant IS NOT NULL THEN
        PERFORM stage_norm._tenant_column(tbl, col, tenant, 'unknown_labels');
        v_tenant := format('coalesce(t.%I::text, ''NULL'')', tenant);
    END IF;
    v_labels := CASE v_kind
        WHEN 'text'  THEN format('SELECT t.%1$I::text AS l FROM (SELECT 1) x WHERE t.%1$I IS NOT NULL AND stage_norm.normalize_stage(t.%1$I) IS NULL', col)
        WHEN 'array' THEN format('SELECT e::text AS l FROM unnest(t.%1$I) e WHERE e IS NOT NULL AND stage_norm.normalize_stage(e) IS NULL', col)
        ELSE format('SELECT k AS l FROM jsonb_object_keys(CASE jsonb_typeof(t.%1$I) WHEN ''object'' THEN t.%1$I END) k WHERE stage_norm.normalize_stage(k) IS NULL', col)
    END;
    FOR tenant_value, label, row_count IN EXECUTE format(
        'SELECT %1$s, u.l, count(*) FROM %2$s t CROSS JOIN LATERAL (%3$s) u GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2',
        v_tenant, tbl, v_labels) LOOP
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stage_norm.unknown_labels(regclass, name, name) IS
    'The labels of a column no rule or alias knows (NULL apart), with their counts; per tenant with tenant =>';

CREATE FUNCTION stage_norm.assert_verified(tbl regclass, col name)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := stage_norm.verify(tbl, col);
BEGIN
    IF (v->>'non_canonical')::bigint > 0 THEN
        RAISE EXCEPTION 'column "%" of % holds % non-canonical values', col, tbl, v->>'non_canonical'
            USING ERRCODE = 'check_violation', COLUMN = col,
                  TABLE = (SELECT relname FROM pg_class WHERE oid = tbl),
                  SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                  DETAIL = v::text,
                  HINT = 'CALL stage_norm.migrate(...) rewrites known variants; unknown values need an alias (stage_norm.add_alias) and a second pass, or a fix by hand.';
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION stage_norm.assert_verified(regclass, name) IS
    'stage_norm.verify, raising check_violation (23514) with the report in DETAIL when a non-canonical value remains: for CI gates and runbooks';

-- ---------------------------------------------------------------------------------------------
-- #17: cluster-wide statistics, latency and the circuit breaker (src/stats.rs, generated by
-- pgrx), table_modes with the breaker's columns (sql/trigger.sql), and sql/stats.sql verbatim.
-- stage_norm::stats::_breakers
CREATE FUNCTION stage_norm."_breakers"(
	"strict" bool /* bool */
) RETURNS TABLE (
	"dbid" oid,  /* pg_sys :: Oid */
	"relid" oid,  /* pg_sys :: Oid */
	"schema_name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"tripped" bool,  /* bool */
	"tripped_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"trip_ratio" double precision,  /* Option < f64 > */
	"window_values" double precision,  /* f64 */
	"window_rejects" double precision  /* f64 */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_breakers_wrapper';

-- stage_norm::stats::_latency
CREATE FUNCTION stage_norm."_latency"() RETURNS TABLE (
	"dbid" oid,  /* pg_sys :: Oid */
	"relid" oid,  /* pg_sys :: Oid */
	"schema_name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"sampled_calls" bigint,  /* i64 */
	"mean_us" double precision,  /* Option < f64 > */
	"p50_us" double precision,  /* Option < f64 > */
	"p99_us" double precision,  /* Option < f64 > */
	"p999_us" double precision  /* Option < f64 > */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_latency_wrapper';

-- stage_norm::stats::_latency_buckets
CREATE FUNCTION stage_norm."_latency_buckets"() RETURNS TABLE (
	"dbid" oid,  /* pg_sys :: Oid */
	"relid" oid,  /* pg_sys :: Oid */
	"schema_name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"le" double precision,  /* f64 */
	"count" bigint,  /* i64 */
	"sum_us" double precision,  /* f64 */
	"total" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_latency_buckets_wrapper';

-- stage_norm::stats::_reset_breaker
CREATE FUNCTION stage_norm."_reset_breaker"(
	"tbl" oid /* pg_sys :: Oid */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_reset_breaker_wrapper';

-- stage_norm::stats::_stats
CREATE FUNCTION stage_norm."_stats"() RETURNS TABLE (
	"dbid" oid,  /* pg_sys :: Oid */
	"relid" oid,  /* pg_sys :: Oid */
	"attnum" smallint,  /* i16 */
	"schema_name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"column_name" TEXT,  /* String */
	"outcome" TEXT,  /* & '_ str */
	"count" bigint,  /* i64 */
	"mode" TEXT,  /* & '_ str */
	"last_seen" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_stats_wrapper';

-- stage_norm::stats::_stats_info
CREATE FUNCTION stage_norm."_stats_info"() RETURNS TABLE (
	"columns_used" INT,  /* i32 */
	"columns_max" INT,  /* i32 */
	"tables_used" INT,  /* i32 */
	"tables_max" INT,  /* i32 */
	"dropped" bigint,  /* i64 */
	"stats_reset" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_stats_info_wrapper';

-- stage_norm::stats::reset_stats
CREATE FUNCTION stage_norm."reset_stats"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'sql_reset_stats_wrapper';

CREATE OR REPLACE VIEW stage_norm.table_modes AS
WITH governed AS (
    SELECT t.tgrelid AS relid,
           pg_catalog.array_remove(pg_catalog.string_to_array(pg_catalog.encode(t.tgargs, 'escape'), '\000'), '')::name[] AS columns,
           t.tgenabled <> 'D' AS trigger_enabled
      FROM pg_catalog.pg_trigger t
     WHERE t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure AND NOT t.tgisinternal
       AND t.tgparentid = 0  -- the tables attach was run on, not each partition's clone
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
  FULL JOIN stage_norm.table_mode_settings s ON s.tbl = g.relid
  JOIN pg_catalog.pg_class c ON c.oid = coalesce(g.relid, s.tbl)
  -- the circuit breaker (with stage_norm preloaded; otherwise never tripped)
  LEFT JOIN stage_norm._breakers(false) b ON b.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                                          AND b.relid = c.oid;
-- Cluster-wide statistics (src/stats.rs; docs/monitoring.md). With stage_norm in
-- shared_preload_libraries; without it, every view here raises 55000 with a HINT.
-- Readable by pg_monitor (and superusers): the names are of every database's tables.

CREATE VIEW stage_norm.stats AS
SELECT d.datname, s.schema_name, s.table_name, s.column_name, s.outcome, s.count, s.mode, s.last_seen,
       s.dbid, s.relid, s.attnum
  FROM stage_norm._stats() s
  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid;
COMMENT ON VIEW stage_norm.stats IS
    'Cluster-wide trigger outcomes per database, table, column and outcome (counts since stats_reset; mode: the effective mode of the last flush)';

CREATE VIEW stage_norm.stats_info AS
SELECT * FROM stage_norm._stats_info();
COMMENT ON VIEW stage_norm.stats_info IS
    'The shared statistics table: columns and tables tracked and their maximum (stage_norm.max_tracked_columns), flushes dropped for want of room, and the last reset';

CREATE VIEW stage_norm.latency AS
SELECT d.datname, l.schema_name, l.table_name, l.sampled_calls, l.mean_us, l.p50_us, l.p99_us, l.p999_us, l.dbid, l.relid
  FROM stage_norm._latency() l
  LEFT JOIN pg_catalog.pg_database d ON d.oid = l.dbid;
COMMENT ON VIEW stage_norm.latency IS
    'Trigger latency per table, from a sample (stage_norm.latency_sample_every): mean and quantiles in microseconds, interpolated within log-scale buckets';

CREATE VIEW stage_norm.latency_buckets AS
SELECT d.datname, l.schema_name, l.table_name, l.le, l.count, l.sum_us, l.total, l.dbid, l.relid
  FROM stage_norm._latency_buckets() l
  LEFT JOIN pg_catalog.pg_database d ON d.oid = l.dbid;
COMMENT ON VIEW stage_norm.latency_buckets IS
    'The latency histogram per table, cumulative (le in microseconds, the last +Infinity), with its sum and count: a Prometheus histogram';

CREATE VIEW stage_norm.breakers AS
SELECT d.datname, b.schema_name, b.table_name, b.tripped, b.tripped_at, b.trip_ratio, b.window_values, b.window_rejects,
       b.dbid, b.relid
  FROM stage_norm._breakers(true) b
  LEFT JOIN pg_catalog.pg_database d ON d.oid = b.dbid;
COMMENT ON VIEW stage_norm.breakers IS
    'The circuit breaker of every tracked table: tripped or not, when, at which reject ratio, and the current window''s values and rejections';

REVOKE ALL ON stage_norm.stats, stage_norm.stats_info, stage_norm.latency, stage_norm.latency_buckets, stage_norm.breakers FROM PUBLIC;
GRANT SELECT ON stage_norm.stats, stage_norm.stats_info, stage_norm.latency, stage_norm.latency_buckets, stage_norm.breakers TO pg_monitor;
CREATE FUNCTION stage_norm.reset_breaker(tbl regclass)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT stage_norm._reset_breaker(tbl::oid) $$;
COMMENT ON FUNCTION stage_norm.reset_breaker(regclass) IS
    'Closes a table''s circuit breaker (this database): enforcement applies again from the next row; true when it was tripped. Privileged: granted by the DBA';

-- A view's functions run with the rights of the querying role: the readers of the views need
-- EXECUTE on them too. _breakers(false) stays executable by PUBLIC for table_modes (this
-- database's tables only); _breakers(true) refuses callers without pg_monitor (see src/stats.rs).
REVOKE EXECUTE ON FUNCTION stage_norm._stats(), stage_norm._stats_info(), stage_norm._latency(), stage_norm._latency_buckets(),
    stage_norm._reset_breaker(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stage_norm._stats(), stage_norm._stats_info(), stage_norm._latency(), stage_norm._latency_buckets()
    TO pg_monitor;
REVOKE EXECUTE ON FUNCTION stage_norm.reset_stats(), stage_norm.reset_breaker(regclass) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- #18: Citus: one configuration on every node (sql/citus.sql, and the Citus parts of
-- sql/trigger.sql: citus_table_modes, set_table_mode, attach, detach, table_modes).

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

CREATE OR REPLACE FUNCTION stage_norm.set_table_mode(tbl regclass, mode text)
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

CREATE OR REPLACE FUNCTION stage_norm.attach(tbl regclass, VARIADIC cols name[])
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

CREATE OR REPLACE FUNCTION stage_norm.detach(tbl regclass)
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

CREATE OR REPLACE VIEW stage_norm.table_modes AS
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

-- The prepared, uncommitted transactions that change stage_norm's configuration here (#28).
CREATE FUNCTION stage_norm._prepared_config_changes() RETURNS text
VOLATILE STRICT PARALLEL RESTRICTED
LANGUAGE c AS 'MODULE_PATHNAME', 'prepared_config_changes_sql_wrapper';

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

-- ---------------------------------------------------------------------------------------------
-- #19: security review fixes: add_check pins search_path for its transactions (sql/add_check.sql);
-- _change_stages prints failing values with their type's output function, not a cast (sql/stages.sql).
CREATE OR REPLACE PROCEDURE stage_norm.add_check(tbl regclass, col name, validate boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    v_attnum  int2;
    v_name    text;
    v_valid   boolean;
    v_exists  boolean;
    v_kind    text;
    v_check   text;
    v_path    text := pg_catalog.current_setting('search_path');   -- the caller's, put back at the end
    v_tblname text := tbl::text;                                  -- as the caller's path prints it
BEGIN
    -- Every name and operator below resolves in pg_catalog only, whatever the caller's search_path
    -- (a procedure that COMMITs cannot have a SET clause): pinned for this transaction here and
    -- again after every COMMIT; the caller's path is back when the CALL's transaction ends.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    v_name := col::pg_catalog.text OPERATOR(pg_catalog.||) '_stage_canonical';
    IF tbl IS NULL OR col IS NULL OR validate IS NULL THEN
        RAISE EXCEPTION 'stage_norm.add_check: arguments must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF validate AND stage_norm._in_transaction_block() THEN
        RAISE EXCEPTION 'stage_norm.add_check(validate => true) cannot run inside a transaction block'
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'It commits between adding the constraint NOT VALID and validating it, so that the ACCESS EXCLUSIVE lock is held only for an instant.',
                  HINT = 'Run it outside BEGIN ... COMMIT, or pass validate => false and run ALTER TABLE ... VALIDATE CONSTRAINT later.';
    END IF;

    -- A table stage_norm may govern: not a view, a catalog or stage_norm's own (it alters it).
    PERFORM stage_norm._check_relation(tbl, true);
    v_kind := stage_norm._stage_column(tbl, col);
    v_check := CASE v_kind WHEN 'jsonb' THEN 'is_valid_stage_distribution'
                           WHEN 'array' THEN 'is_canonical_stage_array'
                           ELSE 'is_canonical_stage' END;
    SELECT a.attnum INTO v_attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = col;
    IF pg_catalog.octet_length(v_name) > 63 THEN
        v_name := 'stage_canonical_' || v_attnum;
    END IF;

    SELECT true, c.convalidated INTO v_exists, v_valid
      FROM pg_catalog.pg_constraint c
     WHERE c.conrelid = tbl AND c.conname = v_name;
    IF NOT coalesce(v_exists, false) THEN
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (stage_norm.%I(%I)) NOT VALID',
                                  tbl, v_name, v_check, col);
        v_valid := false;
        RAISE NOTICE 'added constraint % on % NOT VALID', v_name, v_tblname;
    END IF;
    IF validate AND NOT v_valid THEN
        COMMIT;  -- release the ACCESS EXCLUSIVE lock before the scan
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXECUTE pg_catalog.format('ALTER TABLE %s VALIDATE CONSTRAINT %I', tbl, v_name);
        RAISE NOTICE 'validated constraint % on %', v_name, v_tblname;
    END IF;
    -- (inside the caller's transaction block, validate => false, the rest of it keeps its path)
    PERFORM pg_catalog.set_config('search_path', v_path, true);
END
$$;
COMMENT ON PROCEDURE stage_norm.add_check(regclass, name, boolean) IS
    'Adds CHECK (stage_norm.is_canonical_stage(col)) named <col>_stage_canonical (is_valid_stage_distribution for jsonb, is_canonical_stage_array for arrays): NOT VALID, COMMIT, then VALIDATE';

CREATE OR REPLACE FUNCTION stage_norm._change_stages(stages text[], rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old      text[];
    v_default  text[] := stage_norm._default_stages();
    v_longest  int;
    v_fns      oid[] := ARRAY['stage_norm.is_canonical_stage(text)'::regprocedure::oid,
                              'stage_norm.is_valid_stage_distribution(jsonb)'::regprocedure::oid,
                              'stage_norm.is_canonical_stage_array(text[])'::regprocedure::oid,
                              'stage_norm._normalize_stage_rules(text)'::regprocedure::oid];
    v_list     text;
    v_con      record;
    v_bad      text;
    v_problems text[] := '{}'::text[];
BEGIN
    IF stages IS NULL OR array_position(stages, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a stage set cannot contain NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Name every stage, in order.';
    END IF;
    PERFORM stage_norm._refuse_nul(s, 'a stage name', 'set_stages') FROM unnest(stages) AS s;
    IF EXISTS (SELECT FROM unnest(stages) AS s WHERE strpos(s, E'\n') > 0) THEN
        RAISE EXCEPTION 'a stage name cannot contain a line break'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM stage_norm._check_stage_set(array_to_string(stages, E'\n'));
    -- Set changes and alias writes are serialized on the aliases table (the wrappers take this
    -- lock before they read the current set); taking it accepts the invalidations of a change
    -- committed meanwhile, so the set read below is the committed one.
    LOCK TABLE stage_norm.aliases IN SHARE ROW EXCLUSIVE MODE;
    v_old := ARRAY(SELECT s FROM stage_norm.canonical_stages() AS s);
    IF stages = v_old THEN
        RETURN;  -- the same set: nothing to do
    END IF;

    -- A CHECK that depends on the set is re-checked below by this function, which runs as the
    -- extension's owner: only CHECKs made of built-in code and extensions' code qualify (no
    -- function, operator or type of a user's), so that re-checking runs nobody's code with
    -- those rights.
    SELECT string_agg(format('%s (constraint %I)', c.conrelid::regclass, c.conname), ', ') INTO v_list
      FROM pg_constraint c
     WHERE c.contype = 'c' AND c.conrelid <> 0
       AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_proc'::regclass AND d.refobjid = ANY (v_fns))
       AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
                      AND d.refclassid <> 'pg_class'::regclass
                      AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = d.refclassid
                                         AND e.objid = d.refobjid AND e.deptype = 'e'));
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot change while CHECK constraints that use user-defined code depend on it'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Constraints: %s.', v_list),
                  HINT = 'Re-check them yourself: drop them, change the set, add them again (stage_norm.add_check makes one that qualifies).';
    END IF;

    -- No writer may slip in between the re-check below and the commit: the tables whose CHECKs
    -- depend on the set take no writes until this transaction ends (a writer already running
    -- is waited for, so its rows are re-checked too; one that waits here sees the new set when
    -- it gets its lock). Other sessions' temporary tables cannot be read, and are skipped.
    FOR v_con IN
        SELECT DISTINCT c.conrelid::regclass AS tbl
          FROM pg_depend d JOIN pg_constraint c ON c.oid = d.objid JOIN pg_class r ON r.oid = c.conrelid
         WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_proc'::regclass
           AND d.refobjid = ANY (v_fns) AND c.contype = 'c' AND c.conrelid <> 0
           AND c.conrelid <> 'stage_norm.aliases'::regclass
           AND (r.relpersistence <> 't' OR r.relnamespace = pg_my_temp_schema())
         ORDER BY 1
    LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', v_con.tbl);
    END LOOP;


    -- Objects that store or index is_canonical_stage's answers would go stale.
    SELECT string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), '; ') INTO v_list
      FROM pg_depend d
     WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = ANY (v_fns)
       AND (d.classid = 'pg_class'::regclass                                     -- index
            OR d.classid = 'pg_attrdef'::regclass                                -- generated column
            OR (d.classid = 'pg_rewrite'::regclass                               -- materialized view
                AND EXISTS (SELECT FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                             WHERE r.oid = d.objid AND c.relkind = 'm'))
            OR (d.classid = 'pg_constraint'::regclass
                AND EXISTS (SELECT FROM pg_constraint c WHERE c.oid = d.objid AND c.contypid <> 0)));  -- domain
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot change while objects store answers of stage_norm''s stage checks'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Depending on it: %s.', v_list),
                  HINT = 'Drop them, change the set, then create them again (PostgreSQL does not recompute an index or a generated column when a function''s answers change).';
    END IF;

    -- Aliases of stages that go.
    SELECT string_agg(format('%L -> %L', a.alias, a.stage), ', ' ORDER BY a.alias) INTO v_list
      FROM stage_norm.aliases a
     WHERE a.stage <> ALL (stages) AND a.stage IS DISTINCT FROM rename_from;
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'the stage set cannot drop stages that aliases point at'
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Aliases: %s.', v_list),
                  HINT = 'Remove them with stage_norm.remove_alias(...), or rename the stage with stage_norm.rename_stage(old, new) (its aliases follow).';
    END IF;

    -- Governed columns too short for the new stages.
    SELECT max(length(s)) INTO v_longest FROM unnest(stages) AS s;
    SELECT string_agg(format('%s.%I (%s characters)', d.refobjid::regclass, a.attname, stage_norm._column_width(d.refobjid::regclass, a.attnum)), ', ')
      INTO v_list
      FROM pg_depend d
      JOIN pg_trigger t ON t.oid = d.objid
      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_trigger'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
       AND t.tgfoid = 'stage_norm.normalize_trigger()'::regprocedure
       AND stage_norm._column_width(d.refobjid::regclass, a.attnum) < v_longest;
    IF v_list IS NOT NULL THEN
        RAISE EXCEPTION 'governed columns are too short for the new stage set'
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('The longest new stage has %s characters; too short: %s.', v_longest, v_list),
                  HINT = 'Widen them first, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE varchar(32) (detach, alter, attach).';
    END IF;

    -- Write the set (no type for the default set), and let aliases follow a rename.
    IF pg_catalog.to_regtype('stage_norm.stage_set') IS NOT NULL THEN
        DROP TYPE stage_norm.stage_set;
    END IF;
    IF stages IS DISTINCT FROM v_default THEN
        EXECUTE format('CREATE TYPE stage_norm.stage_set AS ENUM (%s)',
                       (SELECT string_agg(format('%L', s), ', ' ORDER BY o) FROM unnest(stages) WITH ORDINALITY AS u(s, o)));
        COMMENT ON TYPE stage_norm.stage_set IS
            'The canonical stages of stage_norm, in order (written by stage_norm.set_stages; do not use it as a column type)';
    END IF;
    IF rename_from IS NOT NULL THEN
        UPDATE stage_norm.aliases a SET stage = rename_to WHERE a.stage = rename_from;
    END IF;

    -- From here on this transaction classifies with the new set. Every CHECK that depends on
    -- it must still hold for every row; else the whole change is refused.
    FOR v_con IN
        SELECT DISTINCT c.conrelid::regclass AS tbl, c.conname,
               pg_get_expr(c.conbin, c.conrelid) AS expr,
               CASE WHEN cardinality(c.conkey) = 1
                    THEN (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) END AS col,
               -- values are shown only to a caller who may read them (and no row security hides rows)
               cardinality(c.conkey) = 1 AND NOT r.relrowsecurity
                 AND has_column_privilege(session_user, c.conrelid,
                                          (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1])::text,
                                          'SELECT') AS readable
          FROM pg_depend d JOIN pg_constraint c ON c.oid = d.objid JOIN pg_class r ON r.oid = c.conrelid
         WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_proc'::regclass
           AND d.refobjid = ANY (v_fns) AND c.contype = 'c' AND c.convalidated
           AND (r.relpersistence <> 't' OR r.relnamespace = pg_my_temp_schema())
         ORDER BY 1, 2
    LOOP
        IF v_con.readable THEN   -- the values that would fail (at most 5 shown)
            -- Printed by the column type's output function (format's %s), never by a cast to text:
            -- a user's cast (CREATE CAST ... WITH FUNCTION) would run as this function's owner.
            EXECUTE format('SELECT string_agg(v, '', '') FROM (SELECT DISTINCT quote_nullable(left('
                           'CASE WHEN num_nulls(%1$I) = 0 THEN format(''%%s'', %1$I) END, 64)) AS v '
                           'FROM %2$s WHERE NOT (%3$s) LIMIT 5) s', v_con.col, v_con.tbl, v_con.expr)
               INTO v_bad;
        ELSE
            EXECUTE format('SELECT count(*) || '' row(s)'' FROM %s WHERE NOT (%s) HAVING count(*) > 0', v_con.tbl, v_con.expr)
               INTO v_bad;
        END IF;
        IF v_bad IS NOT NULL THEN
            v_problems := v_problems || format('%s (constraint %I): %s', v_con.tbl, v_con.conname, v_bad);
        END IF;
    END LOOP;
    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'the new stage set would break CHECK constraints'
            USING ERRCODE = 'check_violation',
                  DETAIL = format('Rows that would no longer pass: %s.', array_to_string(v_problems, '; ')),
                  HINT = 'Move those rows to stages of the new set first (rename_stage moves aliases, not rows; see docs/normalization.md), then change the set.';
    END IF;
    -- Cached plans may have folded a check of a constant: replan them.
    ALTER FUNCTION stage_norm.is_canonical_stage(text) IMMUTABLE;
    ALTER FUNCTION stage_norm.is_valid_stage_distribution(jsonb) IMMUTABLE;
    ALTER FUNCTION stage_norm.is_canonical_stage_array(text[]) IMMUTABLE;
END
$$;

-- effective_mode pins its search_path, as every SQL function of the extension does.
CREATE OR REPLACE FUNCTION stage_norm.effective_mode(tbl regclass)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT stage_norm._effective_mode(tbl::oid) $$;

-- ---------------------------------------------------------------------------------------------
-- Last: triggers attached under 0.1.0 record their column dependencies, and partitions governed
-- through a parent get the summary trigger.
SELECT stage_norm._sync_trigger(t.oid)
  FROM pg_catalog.pg_trigger t
 WHERE t.tgparentid = 0 AND t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure;
SELECT stage_norm._summarize_partitions(c.oid::regclass)
  FROM pg_catalog.pg_class c
 WHERE c.relkind = 'p' AND NOT c.relispartition
   AND EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'stage_norm_normalize');
-- Every configuration table registered again for pg_dump (an upgrade keeps the registrations,
-- but saying so here makes the script the whole story).
SELECT pg_catalog.pg_extension_config_dump('stage_norm.aliases', '');
SELECT pg_catalog.pg_extension_config_dump('stage_norm.table_mode_settings', '');
SELECT pg_catalog.pg_extension_config_dump('stage_norm.citus_table_modes', '');
