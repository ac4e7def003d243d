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

-- Shared by add_check (and the trigger's attach): the attribute number of a text-like column,
-- or a clear error. Text-like: text, varchar, char(n), citext, or a domain over one of them.
CREATE FUNCTION stage_norm._text_column(tbl regclass, col name)
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
