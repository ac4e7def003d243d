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
CREATE INDEX migration_runs_relid_column_name_idx ON stage_norm.migration_runs (relid, column_name) WHERE status IN ('running', 'paused', 'failed');
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
        -- the same call on every shard placement (Citus fills %L with each one's shard)
        RAISE NOTICE 'stage_norm.rollback_column_migration: % shard placements of % rolled back',
            stage_norm._citus_on_placements(tbl,
                format('CALL stage_norm.rollback_column_migration(%%L, %s, %s)', replace(quote_literal(col), '%', '%%'), batch_size),
                'stage_norm.rollback_column_migration',
                'The others are rolled back. CALL it again: a shard already rolled back has nothing left to do.'),
            tbl;
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

-- One statement on every shard placement of a Citus distributed or reference table, one at a time,
-- each a top-level statement of its own connection to its node (so a procedure COMMITs per batch
-- there; a worker's ordinary session does not see the shards). Citus fills the statement with
-- format(statement, <the placement's shard, a qualified identifier>): the caller writes %L where
-- the shard goes (a literal: a quote in a table name cannot end it) and doubles every other %
-- (in a column's name, an option), so that it stays itself. Returns how many placements ran it;
-- when any failed, raises 38000 naming each, after the others have run. Shared by migrate and
-- rollback_column_migration.
CREATE FUNCTION stage_norm._citus_on_placements(tbl regclass, statement text, caller text, hint text)
RETURNS int
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- lint: needs Citus (checked by scripts/citus-check.sh, not by pg_test/lint)
DECLARE
    r     record;
    v_bad text[] := '{}'::text[];
    v_n   int := 0;
BEGIN
    FOR r IN EXECUTE 'SELECT nodename, nodeport, shardid, success, result FROM pg_catalog.run_command_on_placements($1, $2, false) ORDER BY shardid, nodeport'
               USING tbl, statement LOOP
        v_n := v_n + 1;
        IF NOT r.success THEN
            v_bad := v_bad || format('shard %s on %s:%s: %s', r.shardid, r.nodename, r.nodeport, r.result);
        END IF;
    END LOOP;
    IF cardinality(v_bad) > 0 THEN
        RAISE EXCEPTION '%: % of % shard placements of % failed', caller, cardinality(v_bad), v_n, tbl
            USING ERRCODE = 'external_routine_exception',
                  DETAIL = array_to_string(v_bad, E'\n'),
                  HINT = hint;
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION stage_norm._citus_on_placements(regclass, text, text, text) IS
    'Internal: one statement on every shard placement of a Citus table (migrate, rollback_column_migration)';

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
    v_n     int;
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
    v_n := stage_norm._citus_on_placements(tbl,
        format('CALL stage_norm.migrate(%%L, %s, %s)', replace(quote_literal(col), '%', '%%'), replace(options, '%', '%%')),
        'stage_norm.migrate',
        'The others are done. CALL it again: each shard''s run resumes where it stopped (stage_norm.migration_progress on that shard''s node).');
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
