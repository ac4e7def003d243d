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
