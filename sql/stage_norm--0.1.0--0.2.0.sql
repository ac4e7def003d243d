-- stage_norm 0.1.0 -> 0.2.0 (written by hand; every step of this release's SQL changes, in order).
-- ALTER EXTENSION stage_norm UPDATE runs it after the new shared library is installed.
\echo Use "ALTER EXTENSION stage_norm UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- #13 write-path fixes.
-- The SQL functions read text as bytes (invalid UTF-8 is an unknown label): same signatures and
-- symbols, nothing to do here; the new shared library carries the fix.

-- DDL on governed columns: the trigger depends on its columns (src/ddl.rs), an event trigger
-- keeps it in step; partitions get the summary trigger; attach makes partitions' own triggers
-- give way to the parent's, and detach removes the partitions' summary triggers.
CREATE FUNCTION stage_norm._sync_trigger(tgoid oid) RETURNS text[]
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'sync_trigger_wrapper';

CREATE OR REPLACE FUNCTION stage_norm.attach(tbl regclass, VARIADIC cols name[])
RETURNS void
LANGUAGE plpgsql
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_col    name;
    v_attnum int2;
    v_typmod int4;
    v_type   oid;
    v_args   text;
    v_longest     text;
    v_longest_len int4;
    v_part        regclass;
BEGIN
    IF tbl IS NULL OR cols IS NULL OR cardinality(cols) = 0 THEN
        RAISE EXCEPTION 'stage_norm.attach needs a table and at least one column'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT stage_norm.attach(''portfolio'', ''stage'');';
    END IF;
    -- The widest canonical stage, from the stage set itself (not a literal).
    SELECT s, length(s) INTO v_longest, v_longest_len
      FROM stage_norm.canonical_stages() AS s ORDER BY length(s) DESC LIMIT 1;
    FOREACH v_col IN ARRAY cols LOOP
        v_attnum := stage_norm._text_column(tbl, v_col);
        SELECT a.atttypmod, a.atttypid INTO v_typmod, v_type
          FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum = v_attnum;
        IF v_typmod >= 4 AND v_typmod - 4 < v_longest_len THEN
            RAISE EXCEPTION 'column "%" of relation % is too short to hold every canonical stage', v_col, tbl
                USING ERRCODE = 'datatype_mismatch', COLUMN = v_col,
                      TABLE = (SELECT c.relname FROM pg_class c WHERE c.oid = tbl),
                      SCHEMA = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
                      DETAIL = format('It is %s; the longest canonical stage, %s, has %s characters.', format_type(v_type, v_typmod), v_longest, v_longest_len),
                      HINT = 'Widen it, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE varchar(20).';
        END IF;
    END LOOP;
    SELECT string_agg(format('%L', c), ', ' ORDER BY o) INTO v_args
      FROM unnest(cols) WITH ORDINALITY AS u(c, o);
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
END
$$;
CREATE OR REPLACE FUNCTION stage_norm.detach(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_had  boolean;
    v_name name;
    v_part regclass;
BEGIN
    v_had := false;
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
    RETURN v_had;
END
$$;
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
CREATE FUNCTION stage_norm._ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tbls oid[];
    v_tbl  oid;
    v_trig oid;
    v_cols name[];
BEGIN
    SELECT array_agg(DISTINCT CASE WHEN c.classid = 'pg_trigger'::regclass
                                   THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = c.objid)
                                   ELSE c.objid END)
      INTO v_tbls
      FROM pg_catalog.pg_event_trigger_ddl_commands() c
     WHERE c.classid IN ('pg_class'::regclass, 'pg_trigger'::regclass);
    -- The stage_norm triggers (not clones) of the tables the command touched, and any that
    -- has no column dependency yet (a partition detached by this command becomes one).
    FOR v_trig, v_tbl IN
        SELECT t.oid, t.tgrelid FROM pg_catalog.pg_trigger t
         WHERE t.tgfoid = 'stage_norm.normalize_trigger()'::regprocedure AND t.tgparentid = 0
           AND (t.tgrelid = ANY (v_tbls)
                OR NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid AND d.refobjsubid > 0))
    LOOP
        v_cols := stage_norm._sync_trigger(v_trig);
        IF v_cols IS NOT NULL THEN
            RAISE NOTICE 'stage_norm: % now governs columns %', v_tbl::regclass, array_to_string(v_cols, ', ')
                USING DETAIL = 'A governed column was renamed; its trigger follows the new name.';
            PERFORM stage_norm.attach(v_tbl::regclass, VARIADIC v_cols);
        END IF;
    END LOOP;
    PERFORM stage_norm._summarize_partitions(r.oid::regclass)
       FROM pg_catalog.pg_class r
      WHERE r.oid = ANY (v_tbls) AND (r.relispartition OR r.relkind = 'p');
END
$$;
COMMENT ON FUNCTION stage_norm._ddl_command_end() IS
    'Internal: the event trigger stage_norm_ddl (renamed governed columns, column dependencies, partitions'' summary triggers)';
CREATE EVENT TRIGGER stage_norm_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TRIGGER')
    EXECUTE FUNCTION stage_norm._ddl_command_end();

-- Triggers attached under 0.1.0: record their column dependencies, and give partitions
-- governed through a parent the summary trigger.
SELECT stage_norm._sync_trigger(t.oid)
  FROM pg_catalog.pg_trigger t
 WHERE t.tgparentid = 0 AND t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure;
SELECT stage_norm._summarize_partitions(c.oid::regclass)
  FROM pg_catalog.pg_class c
 WHERE c.relkind = 'p' AND NOT c.relispartition
   AND EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'stage_norm_normalize');
