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
