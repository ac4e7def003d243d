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
--   an index, generated column, materialized view or domain depends on is_canonical_stage (or
--   is_valid_stage_distribution, is_canonical_stage_array), whose answers a change alters (2BP01;
--   drop it first);
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
