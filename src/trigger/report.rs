//! How the trigger reports a value it does not store as canonical: the bounded client
//! WARNINGs and their summary, the sampled server-log line, the 23514 rejection, and the
//! canary bucket that decides between the last two under enforce.
use super::*;
use crate::encoding::quote;

/// Client WARNINGs per statement and table; the rest are summed up by `summary_trigger`.
pub const WARNINGS_PER_STATEMENT: u64 = 3;

/// Why a value is not rewritten or passed: it is unknown, or it is a known variant that may not
/// be rewritten here. The mode then treats it as an unknown value (stored and reported,
/// counted, or rejected).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Unknown,
    /// It arrived through a foreign key's referential action (ON UPDATE CASCADE, SET DEFAULT):
    /// rewriting it would make the row reference a value that no referenced row holds.
    ForeignKeyAction(StageId),
    /// The column's domain does not accept the canonical value it would be rewritten to.
    DomainRefuses(StageId),
}

/// A governed value that is not stored as canonical.
pub(super) enum Problem<'a> {
    /// A text value: unknown, or a known variant that may not be rewritten here.
    Text(&'a [u8], Why),
    /// A distribution or a stage array.
    /// Boxed: the text path returns `Problem`s by value on every row, and keeps them small.
    Structured(Box<Structured<'a>>),
}

/// A distribution or a stage array that is not stored as canonical: what it is ("stage
/// distribution", "stage array"), its first reasons (at most `dist::DETAIL_REASONS`) and how
/// many in all, and its stored bytes (the canary bucket of a row without a key).
pub(super) struct Structured<'a> {
    pub(super) what: &'static str,
    pub(super) reasons: Vec<String>,
    pub(super) total: usize,
    pub(super) raw: &'a [u8],
}

use stage_norm_core::dist::detail as bounded;

impl Problem<'_> {
    /// The bytes the canary bucket hashes when the table has no primary key.
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Problem::Text(b, _) => b,
            Problem::Structured(st) => st.raw,
        }
    }
}

#[derive(Default)]
pub(super) struct StatementWarnings {
    pub(super) statement: (pg_sys::TimestampTz, pg_sys::CommandId),
    /// relid -> unknown values seen in this statement
    pub(super) unknown: FnvMap<pg_sys::Oid, u64>,
}

pub(super) static WARNINGS: Global<Option<StatementWarnings>> = Global::new(None);
pub(super) static RNG: Global<u64> = Global::new(0);
/// A WARNING for the client only (PostgreSQL 15's WARNING_CLIENT_ONLY: never in the server
/// log, which gets sampled LOG lines instead). Returns normally.
pub(super) fn client_warning(message: String, detail: String, hint: Option<String>) {
    unsafe {
        let edata = error_data(pg_sys::WARNING_CLIENT_ONLY, PgSqlErrorCode::ERRCODE_WARNING, message, Some(detail), hint);
        pg_sys::ThrowErrorData(edata);
    }
}

/// A palloc'd ErrorData for ThrowErrorData.
pub(super) unsafe fn error_data(
    elevel: u32,
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
) -> *mut pg_sys::ErrorData {
    // In the database's encoding: the messages quote values and names (crate::encoding).
    let pstr = |s: String| crate::encoding::to_server(&s);
    let edata = pg_sys::palloc0(std::mem::size_of::<pg_sys::ErrorData>()).cast::<pg_sys::ErrorData>();
    (*edata).elevel = elevel as c_int;
    (*edata).sqlerrcode = code as c_int;
    (*edata).message = pstr(message);
    if let Some(d) = detail {
        (*edata).detail = pstr(d);
    }
    if let Some(h) = hint {
        (*edata).hint = pstr(h);
    }
    (*edata).filename = c"trigger/report.rs".as_ptr();
    (*edata).lineno = line!() as c_int;
    (*edata).funcname = c"normalize_trigger".as_ptr();
    edata
}

/// xorshift64*: log sampling only, no need for quality beyond uniformity.
pub(super) fn random_unit() -> f64 {
    // SAFETY: single-threaded, not reentrant.
    let rng = unsafe { RNG.get() };
    let mut x = *rng;
    if x == 0 {
        x = (unsafe { pg_sys::MyProcPid } as u64) << 32 ^ unsafe { pg_sys::GetCurrentTimestamp() } as u64 | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// A name (schema, table, column) for a message.
pub(super) fn name_of(name: &CStr) -> String {
    crate::encoding::text_of(name.to_bytes())
}

pub(super) fn stage_list() -> String {
    cache::set().stages.iter().map(|s| &**s).collect::<Vec<_>>().join(", ")
}

pub(super) fn hint(p: &Problem) -> String {
    let (value, why) = match p {
        Problem::Text(value, why) => (*value, *why),
        Problem::Structured(st) if st.what == "stage distribution" => {
            return format!(
                "Keys must be stages or their aliases ({}); weights numbers from 0 to 1 that sum to 1 (+/- 1e-6). \
                 SELECT stage_norm.stage_distribution_errors(value) lists every reason.",
                stage_list()
            )
        }
        Problem::Structured(_) => {
            return format!("Use one of: {}; or ask a DBA to add an alias with stage_norm.add_alias(alias, stage).", stage_list())
        }
    };
    match why {
        Why::Unknown if !value.is_ascii() && unsafe { pg_sys::GetDatabaseEncoding() } != pg_sys::pg_enc::PG_UTF8 as i32 => format!(
            "In a database whose encoding is not UTF8, stage_norm matches labels of ASCII characters only. The stages are: {}.",
            stage_list()
        ),
        Why::Unknown if std::str::from_utf8(value).is_err() => format!(
            "The value is not valid UTF-8 (its invalid bytes are shown as \\xNN): fix its encoding. The stages are: {}.",
            stage_list()
        ),
        Why::Unknown => format!(
            "Use one of: {}; or ask a DBA to add an alias: SELECT stage_norm.add_alias('{}', '<stage>');",
            stage_list(),
            quote(value).replace('\'', "''")
        ),
        Why::ForeignKeyAction(_) => "Govern the referenced column too (stage_norm.attach on the referenced table), so that \
             the values a foreign-key action copies are canonical already; see docs/write-path.md."
            .into(),
        Why::DomainRefuses(_) => "Let the domain accept the canonical stages (ALTER DOMAIN ... DROP CONSTRAINT, then ADD \
             CONSTRAINT with them), or write values the domain and the stages agree on."
            .into(),
    }
}

/// The message of an unknown (or not rewritable) value, naming the attached table and, for a
/// partition, the partition.
pub(super) fn value_message(e: &Entry, col: &Column, p: &Problem) -> String {
    let col_name = name_of(&col.name);
    let table = match &e.attached_name {
        Some((parent, _, via)) => format!("\"{parent}\" ({via} \"{}\")", name_of(&e.table)),
        None => format!("\"{}\"", name_of(&e.table)),
    };
    let (value, why) = match p {
        Problem::Text(value, why) => (*value, *why),
        Problem::Structured(st) => {
            let Structured { what, reasons, total, .. } = &**st;
            let first = reasons.first().map_or("", |r| r.as_str());
            let more = match *total {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return format!("{what} in column \"{col_name}\" of table {table} is not valid: {first}{more}");
        }
    };
    let q = quote(value);
    match why {
        Why::Unknown => format!("value \"{q}\" for column \"{col_name}\" of table {table} is not a known investment stage"),
        Why::ForeignKeyAction(id) => format!(
            "value \"{q}\" for column \"{col_name}\" of table {table} came through a foreign-key action and is not canonical (\"{}\")",
            cache::set().name(id)
        ),
        Why::DomainRefuses(id) => format!(
            "value \"{q}\" for column \"{col_name}\" of table {table} would be rewritten to \"{}\", which its domain does not accept",
            cache::set().name(id)
        ),
    }
}

/// The table for a DETAIL: `schema.table`, or for a partition governed through its parent,
/// `schema.parent (partition schema.partition)`.
pub(super) fn qualified_table(e: &Entry) -> String {
    let own = format!("{}.{}", name_of(&e.schema), name_of(&e.table));
    match &e.attached_name {
        Some((_, parent, via)) => format!("{parent} ({via} {own})"),
        None => own,
    }
}

/// What the DETAIL says about why the value was not rewritten (empty for an unknown value), or
/// the reasons of a structured value.
pub(super) fn why_detail(p: &Problem) -> String {
    let why = match p {
        Problem::Text(_, why) => *why,
        Problem::Structured(st) => {
            return format!(" Reasons ({}): {}.", st.total, bounded(&st.reasons, st.total));
        }
    };
    match why {
        Why::Unknown => "",
        Why::ForeignKeyAction(_) => " stage_norm never rewrites a value written by a referential action (ON UPDATE CASCADE, SET DEFAULT): the rewritten value would reference no row, and PostgreSQL would not check it.",
        Why::DomainRefuses(_) => " A domain's CHECK runs before triggers, so stage_norm stores only canonical values the domain accepts.",
    }
    .into()
}

/// The canary bucket (0..100) of a row: a hash of its primary key, or of the value when the
/// table has no primary key. Deterministic, so a retried row gets the same answer.
pub(super) unsafe fn bucket(e: &Entry, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, value: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    if e.pk.is_empty() {
        h.write(value);
    }
    for &(attnum, typlen, byval) in &e.pk {
        let mut isnull = false;
        let d = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
        if isnull {
            h.write(&[0xff]);
        } else if byval {
            let n = (typlen as usize).min(8);
            h.write(&(d.value() as u64).to_le_bytes()[..n]);
        } else if typlen > 0 {
            h.write(std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), typlen as usize));
        } else if typlen == -1 {
            h.write(varlena_bytes(d));
        } else {
            h.write(CStr::from_ptr(d.cast_mut_ptr()).to_bytes());
        }
    }
    h.finish() % 100
}

pub(super) fn statement_id() -> (pg_sys::TimestampTz, pg_sys::CommandId) {
    unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) }
}

/// Reports an unknown value that is stored (warn, or enforce outside the canary): a client
/// WARNING for the first few per statement and table, a sampled server-log line always.
pub(super) fn report_unknown(e: &Entry, col: &Column, p: &Problem, mode: Mode) {
    let shown = {
        // SAFETY: single-threaded; WARNINGS is not reachable from the trigger's other borrows.
        let w = unsafe { WARNINGS.get() }.get_or_insert_with(StatementWarnings::default);
        let now = statement_id();
        if w.statement != now {
            w.statement = now;
            w.unknown.clear();
        }
        let n = w.unknown.entry(e.attached).or_insert(0);
        *n += 1;
        *n
    };
    if shown <= WARNINGS_PER_STATEMENT {
        let table = qualified_table(e);
        let stored = match p {
            Problem::Structured(st) if st.what == "stage array" => "the array was stored with its known stages rewritten and the rest as they are",
            _ => "the value was stored as it is",
        };
        let (pending, remedy) = pending_config_note();
        let detail = if mode == Mode::Enforce {
            format!("stage_norm enforces on table {table}, but this row is outside stage_norm.enforce_percent (canary), so {stored}.{}{pending}", why_detail(p))
        } else {
            format!("stage_norm mode is warn for table {table}: {stored}.{}{pending}", why_detail(p))
        };
        // The first copy of a reference table's shard tells the client (once, not per node);
        // every copy still samples its server-log line below.
        if !matches!(e.attached_name, Some((_, _, via)) if via == super::entry::SECONDARY_PLACEMENT) {
            client_warning(value_message(e, col, p), detail, Some(hint(p) + &remedy));
        }
    }
    log_sample(e, col, p, mode);
}

/// A server-log line for an unknown value, with probability `stage_norm.log_sample_rate`, in
/// fixed `key=value` fields for log pipelines (docs/monitoring.md):
/// `stage_norm: event=unknown_value table=public.portfolio column=stage mode=warn kind=text value="Serie A" sample_rate=0.01`
/// Names are written as they are unless they need quoting; values always quoted, truncated to
/// 64 characters, with `"` and `\` escaped and control characters as `\xNN`.
pub(super) fn log_sample(e: &Entry, col: &Column, p: &Problem, mode: Mode) {
    let rate = guc::read(&guc::LOG_SAMPLE_RATE);
    if rate > 0.0 && (rate >= 1.0 || random_unit() < rate) {
        let (kind, value) = match p {
            Problem::Text(value, _) => ("text", format!("value={}", logfmt_quote(&quote(value)))),
            Problem::Structured(st) => (
                if st.what == "stage array" { "array" } else { "distribution" },
                format!("reasons={}", logfmt_quote(&bounded(&st.reasons, st.total))),
            ),
        };
        let own = format!("{}.{}", name_of(&e.schema), name_of(&e.table));
        let table = match &e.attached_name {
            Some((_, q, via)) => format!("{} {via}={}", logfmt_word(q), logfmt_word(&own)),
            None => logfmt_word(&own),
        };
        let message = format!(
            "stage_norm: event=unknown_value table={table} column={} mode={} kind={kind} {value} sample_rate={rate}",
            logfmt_word(&name_of(&col.name)),
            mode.name()
        );
        // Thrown as ErrorData (in the database's encoding); LOG_SERVER_ONLY returns.
        unsafe {
            let edata = error_data(pg_sys::LOG_SERVER_ONLY, PgSqlErrorCode::ERRCODE_WARNING, message, None, None);
            pg_sys::ThrowErrorData(edata);
        }
    }
}

/// A logfmt value in double quotes.
pub(crate) fn logfmt_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name as a logfmt value: bare when it has no space, quote, backslash, `=` or control
/// character; quoted otherwise.
fn logfmt_word(s: &str) -> String {
    if !s.is_empty() && !s.chars().any(|c| c == ' ' || c == '"' || c == '\\' || c == '=' || c.is_control()) {
        s.to_owned()
    } else {
        logfmt_quote(s)
    }
}

/// Prepared configuration changes seen by this statement (looked up once per statement, and
/// only when a value is reported or rejected: never on the rewrite path).
static PENDING: Global<Option<((pg_sys::TimestampTz, pg_sys::CommandId), Option<String>)>> = Global::new(None);

/// What a report adds when this node judges rows by a configuration that a prepared, not yet
/// committed transaction changes ([`crate::cache::prepared_config_changes`]): a sentence for
/// the DETAIL and one for the HINT, or two empty strings.
pub(super) fn pending_config_note() -> (String, String) {
    let now = statement_id();
    // SAFETY: single-threaded; not reentrant (prepared_config_changes does not reach PENDING).
    let cached = unsafe { PENDING.get() }.as_ref().filter(|(at, _)| *at == now).map(|(_, g)| g.clone());
    let gids = match cached {
        Some(g) => g,
        None => {
            let g = crate::cache::prepared_config_changes();
            unsafe { *PENDING.get() = Some((now, g.clone())) };
            g
        }
    };
    match gids {
        None => (String::new(), String::new()),
        Some(g) => (
            format!(" It was judged by this node's configuration before prepared transaction(s) {g}, which change it and are not committed yet."),
            " Commit them (COMMIT PREPARED; on Citus, SELECT recover_prepared_transactions() on the coordinator) and write the row again.".into(),
        ),
    }
}

/// Builds the 23514 error (palloc'd) that the raw entry point throws.
pub(super) unsafe fn rejection(e: &Entry, col: &Column, p: &Problem) -> *mut pg_sys::ErrorData {
    let table = qualified_table(e);
    let (pending, remedy) = pending_config_note();
    let detail = match p {
        Problem::Text(_, Why::Unknown) => format!("stage_norm enforces on table {table}: the value matches no canonical stage, built-in rule or alias.{pending}"),
        _ => format!("stage_norm enforces on table {table}.{}{pending}", why_detail(p)),
    };
    let edata = error_data(
        pg_sys::PGERROR,
        PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
        value_message(e, col, p),
        Some(detail),
        Some(hint(p) + &remedy),
    );
    (*edata).schema_name = pg_sys::pstrdup(e.schema.as_ptr());
    (*edata).table_name = pg_sys::pstrdup(e.table.as_ptr());
    (*edata).column_name = pg_sys::pstrdup(col.name.as_ptr());
    edata
}

