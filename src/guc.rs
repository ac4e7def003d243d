//! Settings. Every one is PGC_SUSET: an application role cannot weaken enforcement with SET;
//! a DBA delegates them with PostgreSQL 15's `GRANT SET ON PARAMETER ... TO role`.
use pgrx::prelude::*;
use pgrx::guc::GucValue;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// What the trigger does with a governed value. Ordered: off < shadow < warn < enforce.
#[derive(PostgresGucEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    #[name = c"off"]
    Off,
    #[name = c"shadow"]
    Shadow,
    #[name = c"warn"]
    Warn,
    #[name = c"enforce"]
    Enforce,
}

impl Mode {
    pub const NAMES: [&'static str; 4] = ["off", "shadow", "warn", "enforce"];

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "off" => Some(Mode::Off),
            "shadow" => Some(Mode::Shadow),
            "warn" => Some(Mode::Warn),
            "enforce" => Some(Mode::Enforce),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// `stage_norm.mode`: the default mode of every governed table.
pub static MODE: GucSetting<Mode> = GucSetting::<Mode>::new(Mode::Warn);
/// `stage_norm.max_mode`: the ceiling; the effective mode is never above it.
pub static MAX_MODE: GucSetting<Mode> = GucSetting::<Mode>::new(Mode::Enforce);
/// `stage_norm.enforce_percent`: under enforce, the share of rows (by primary-key bucket) rejected.
pub static ENFORCE_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(100);
/// `stage_norm.log_sample_rate`: the probability that an unknown value is written to the server log.
pub static LOG_SAMPLE_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.01);
/// `stage_norm.max_tracked_columns` (server start): column entries of the shared statistics.
pub static MAX_TRACKED_COLUMNS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// `stage_norm.track_stats`: count and time into shared memory (when preloaded).
pub static TRACK_STATS: GucSetting<bool> = GucSetting::<bool>::new(true);
/// `stage_norm.latency_sample_every`: time one trigger call in this many.
pub static LATENCY_SAMPLE_EVERY: GucSetting<i32> = GucSetting::<i32>::new(16);
/// `stage_norm.breaker_reject_ratio`: 0 = off.
pub static BREAKER_REJECT_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.0);
/// `stage_norm.breaker_window`, seconds.
pub static BREAKER_WINDOW: GucSetting<i32> = GucSetting::<i32>::new(300);
/// `stage_norm.breaker_min_rows`.
pub static BREAKER_MIN_ROWS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// A setting's current value, read without `GucSetting::get`'s thread check (a thread-local
/// lookup, `__tls_get_addr` in a cdylib: ~24 instructions per read, three reads per row in
/// the trigger). Sound because extension code only ever runs on the backend's main thread,
/// and PostgreSQL only stores values its own validation accepted (a valid enum ordinal).
#[inline(always)]
pub fn read<T: GucValue>(setting: &GucSetting<T>) -> T {
    // SAFETY: see above; the pointer is the setting's own storage, registered with PostgreSQL.
    unsafe { T::from_raw(*setting.as_ptr()) }
}

pub fn init() {
    GucRegistry::define_enum_guc(
        c"stage_norm.mode",
        c"What the stage_norm trigger does: off, shadow, warn or enforce.",
        c"off: nothing. shadow: change nothing, only count what would happen. warn: rewrite known \
          variants, store unknown values and warn. enforce: rewrite known variants, reject unknown values.",
        &MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"stage_norm.max_mode",
        c"The highest mode the stage_norm trigger may use, whatever stage_norm.mode or a table override says.",
        c"ALTER SYSTEM SET stage_norm.max_mode = 'warn'; SELECT pg_reload_conf(); downgrades every table at once.",
        &MAX_MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stage_norm.enforce_percent",
        c"Under enforce, the percentage of rows (by a hash of the primary key) whose unknown values are rejected.",
        c"The other rows are handled as in warn mode. 100 rejects every unknown value.",
        &ENFORCE_PERCENT,
        0,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"stage_norm.log_sample_rate",
        c"Probability that an unknown value seen by the stage_norm trigger is written to the server log.",
        c"0 writes none, 1 writes every one. Client warnings are bounded per statement independently.",
        &LOG_SAMPLE_RATE,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"stage_norm.track_stats",
        c"Whether the stage_norm trigger adds its counts and sampled latency to the cluster-wide statistics.",
        c"Needs stage_norm in shared_preload_libraries; takes effect at the next transaction.",
        &TRACK_STATS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stage_norm.latency_sample_every",
        c"The stage_norm trigger times one call in this many for its latency histogram.",
        c"1 times every call. Reading the clock costs more than the trigger's own work on a canonical value.",
        &LATENCY_SAMPLE_EVERY,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"stage_norm.breaker_reject_ratio",
        c"Trip a table's circuit breaker (cap it at warn) when its share of rejected values over stage_norm.breaker_window exceeds this; 0 turns it off.",
        c"Needs stage_norm in shared_preload_libraries. A tripped table stays at warn until stage_norm.reset_breaker(table).",
        &BREAKER_REJECT_RATIO,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stage_norm.breaker_window",
        c"The window, in seconds, over which the circuit breaker computes a table's reject ratio.",
        c"A sliding window (the previous fixed window weighted by its overlap, plus the current one).",
        &BREAKER_WINDOW,
        1,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"stage_norm.breaker_min_rows",
        c"The circuit breaker trips only when at least this many values were seen in the window.",
        c"Keeps a handful of early rejections from tripping it.",
        &BREAKER_MIN_ROWS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Shared memory is sized once, at server start: only when preloading.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"stage_norm.max_tracked_columns",
            c"How many governed columns the cluster-wide statistics track (and as many tables).",
            c"Set at server start. When full, new columns are not tracked and stage_norm.stats_info.dropped counts them.",
            &MAX_TRACKED_COLUMNS,
            10,
            1_000_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    // PostgreSQL 15+: reject unknown stage_norm.* names and remove stray placeholders.
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"stage_norm".as_ptr())
    };
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"stage_norm".as_ptr())
    };
}
