//! stage_norm: canonical investment stages for PostgreSQL.
//!
//! One module per concern; every arrow between them points down this list (docs/development.md):
//! - [`labels`], [`distributions`], [`arrays`] and [`session`]: the SQL functions on text labels,
//!   on jsonb distributions, on stage arrays and on this session's state; [`ddl`]: keeping the
//!   trigger in step with DDL on the columns it governs; [`stats`]'s SQL functions.
//! - [`trigger`]: the write path (decide the mode, classify each column by its kind, rewrite,
//!   count, report); [`inplace`]: its rewrite inside the row.
//! - [`distributions`] and [`arrays`]: reading and rebuilding those kinds in their binary form
//!   (for the trigger's columns and their SQL functions); [`stats`]: the cluster-wide
//!   statistics in shared memory.
//! - [`cache`]: the backend's configuration (stage set, aliases, table modes), its invalidation,
//!   the set's canonical datums; [`heapread`]: reading a configuration table's visible rows
//!   without building its relation cache entry.
//! - [`server`]: what stage_norm takes from the server below pgrx (backend-global statics,
//!   unguarded calls, tuple descriptors, datums, trigger and function-call data, SPI reads).
//! - [`encoding`] and [`guc`]: text for messages in the server's encoding; the settings.
//! - `stage_norm_core` (crate `core/`): the pure normalizer, the stage set as data. No pgrx.
//! - `sql/*.sql`: SQL that Rust cannot express (tables, PL/pgSQL, procedures, grants).
use pgrx::prelude::*;

mod arrays;
mod cache;
mod ddl;
mod distributions;
mod encoding;
mod guc;
mod heapread;
mod inplace;
mod labels;
mod server;
mod session;
mod stats;
mod trigger;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // No Rust backtrace in a client's DETAIL: pgrx attaches one to an error raised inside a
    // guarded call when backtraces are captured (RUST_BACKTRACE in the server's environment).
    // Whoever sets RUST_LIB_BACKTRACE themselves keeps it.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the backend is single-threaded, and this runs once, at load.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    guc::init();
    cache::init();
    let stats = stats::init();
    trigger::init(stats);
}

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/aliases.sql",
    name = "aliases",
    requires = [
        labels::stage_key,
        labels::refuse_nul_sql,
        labels::is_canonical_stage,
        labels::normalize_stage_builtin,
        labels::canonical_stages,
        labels::normalize_stage_rules
    ]
);
extension_sql_file!("../sql/labels.sql", name = "labels", requires = ["schema"]);
extension_sql_file!("../sql/columns.sql", name = "columns", requires = [labels::canonical_stages]);
extension_sql_file!("../sql/distributions.sql", name = "distributions", requires = ["schema"]);
extension_sql_file!(
    "../sql/stages.sql",
    name = "stages",
    requires = [
        "aliases",
        "distributions",
        labels::stage_forms,
        labels::check_stage_set,
        labels::refuse_nul_sql,
        labels::default_stages,
        labels::is_canonical_stage,
        labels::normalize_stage_rules,
        labels::canonical_stages
    ]
);
extension_sql_file!(
    "../sql/trigger.sql",
    name = "trigger",
    requires = [
        "columns",
        "aliases",
        "stages",
        session::effective_mode,
        session::session_counters,
        stats::sql_breakers,
        ddl::sync_trigger
    ]
);
extension_sql_file!(
    "../sql/add_check.sql",
    name = "add_check",
    requires = ["columns", "distributions", "stages", "trigger", labels::is_canonical_stage, session::in_transaction_block]
);
extension_sql_file!(
    "../sql/migrate.sql",
    name = "migrate",
    requires = [
        "columns",
        "distributions",
        "stages",
        "add_check",
        labels::is_canonical_stage,
        session::in_transaction_block,
        session::uncounted_transaction
    ]
);

extension_sql_file!(
    "../sql/stats.sql",
    name = "stats",
    requires = [
        "trigger",
        stats::sql_stats,
        stats::sql_stats_info,
        stats::sql_latency,
        stats::sql_latency_buckets,
        stats::sql_breakers,
        stats::sql_reset_stats,
        stats::sql_reset_breaker
    ]
);
extension_sql_file!("../sql/citus.sql", name = "citus", requires = ["trigger", "stats"]);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
