//! stage_norm: canonical investment stages for PostgreSQL.
//!
//! One module per concern:
//! - `stage_norm_core` (crate `core/`): the pure normalizer, the stage set as data. No pgrx.
//! - [`cache`]: the backend-local configuration cache (aliases, table modes) and its invalidation.
//! - [`guc`]: the settings.
//! - [`trigger`]: the write path; [`inplace`]: its rewrite inside the row; [`ddl`]: keeping the
//!   trigger in step with DDL on the columns it governs.
//! - [`functions`]: the SQL-callable normalizer, check and alias-key functions; [`kinds`]: stage
//!   distributions (jsonb) and stage arrays, their SQL functions and what the trigger reads.
//! - `sql/*.sql`: SQL that Rust cannot express (tables, PL/pgSQL, procedures, grants).
use pgrx::prelude::*;

mod backend;
mod cache;
mod ddl;
mod encoding;
mod functions;
mod guc;
mod inplace;
mod kinds;
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
    stats::init();
}

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/aliases.sql",
    name = "aliases",
    requires = [
        functions::stage_key,
        functions::refuse_nul_sql,
        functions::is_canonical_stage,
        functions::normalize_stage_builtin,
        functions::canonical_stages,
        functions::normalize_stage_rules
    ]
);
extension_sql_file!("../sql/columns.sql", name = "columns", requires = [functions::canonical_stages]);
extension_sql_file!("../sql/distributions.sql", name = "distributions", requires = ["schema"]);
extension_sql_file!(
    "../sql/stages.sql",
    name = "stages",
    requires = [
        "aliases",
        "distributions",
        functions::stage_forms,
        functions::check_stage_set,
        functions::refuse_nul_sql,
        functions::default_stages,
        functions::is_canonical_stage,
        functions::normalize_stage_rules,
        functions::canonical_stages
    ]
);
extension_sql_file!(
    "../sql/trigger.sql",
    name = "trigger",
    requires = [
        "columns",
        "aliases",
        "stages",
        functions::effective_mode,
        functions::session_counters,
        stats::sql_breakers,
        ddl::sync_trigger
    ]
);
extension_sql_file!(
    "../sql/add_check.sql",
    name = "add_check",
    requires = ["columns", "distributions", "stages", "trigger", functions::is_canonical_stage, functions::in_transaction_block]
);
extension_sql_file!(
    "../sql/migrate.sql",
    name = "migrate",
    requires = [
        "columns",
        "distributions",
        "stages",
        "add_check",
        functions::is_canonical_stage,
        functions::in_transaction_block,
        functions::uncounted_transaction
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
