-- CHECK-constraint helper: proves a column canonical. By the column's kind:
--   text-like:  CHECK (stage_norm.is_canonical_stage(col))
--   jsonb:      CHECK (stage_norm.is_valid_stage_distribution(col))
--   text[]:     CHECK (stage_norm.is_canonical_stage_array(col))
-- A procedure, not a function, because it COMMITs between its two steps: ADD CONSTRAINT ...
-- NOT VALID takes ACCESS EXCLUSIVE only for an instant, and VALIDATE CONSTRAINT then scans the
-- table under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on.
CREATE PROCEDURE stage_norm.add_check(tbl regclass, col name, validate boolean DEFAULT true)
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
