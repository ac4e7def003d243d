//! Stage distributions (jsonb) and stage arrays (text[], varchar(n)[]) through real client
//! connections: the error fields and bounded DETAIL of a rejection, every mode on every column
//! kind with exact counter deltas and the WARNINGs a client receives, exact weights, UPDATE,
//! COPY, bound parameters, and large values.
use postgres::error::{DbError, SqlState};
use postgres::{Client, Config, NoTls};
use stage_norm_client_tests::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

fn db_error(e: postgres::Error) -> DbError {
    e.as_db_error().cloned().unwrap_or_else(|| panic!("not a server error: {e}"))
}

/// A connection to `db` that keeps every notice and warning the server sends.
fn connect_with_notices(db: &str) -> (Client, Arc<Mutex<Vec<DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut cfg: Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n));
    let c = cfg.connect(NoTls).unwrap_or_else(|e| panic!("connect to {db}: {e}"));
    (c, notices)
}

/// The notices received since the last call.
fn take(notices: &Mutex<Vec<DbError>>) -> Vec<DbError> {
    std::mem::take(&mut *notices.lock().unwrap())
}

/// One row of `stage_norm.session_counters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: i64,
    normalized: i64,
    warned: i64,
    rejected: i64,
    would_normalize: i64,
    would_reject: i64,
    unchanged: i64,
    nulls: i64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            passed: self.passed - o.passed,
            normalized: self.normalized - o.normalized,
            warned: self.warned - o.warned,
            rejected: self.rejected - o.rejected,
            would_normalize: self.would_normalize - o.would_normalize,
            would_reject: self.would_reject - o.would_reject,
            unchanged: self.unchanged - o.unchanged,
            nulls: self.nulls - o.nulls,
        }
    }
}

/// This session's counters for `table` (all zero when the trigger has not counted anything).
fn counts(c: &mut Client, table: &str) -> Counts {
    let rows = c
        .query(
            "SELECT passed, normalized, warned, rejected, would_normalize, would_reject, unchanged, nulls
               FROM stage_norm.session_counters WHERE table_name = $1::text::regclass",
            &[&table],
        )
        .unwrap();
    assert!(rows.len() <= 1, "{} counter rows for {table}", rows.len());
    rows.first().map_or(Counts::default(), |r| Counts {
        passed: r.get(0),
        normalized: r.get(1),
        warned: r.get(2),
        rejected: r.get(3),
        would_normalize: r.get(4),
        would_reject: r.get(5),
        unchanged: r.get(6),
        nulls: r.get(7),
    })
}

/// The stored value of column `col` of row `id`, as text (None for NULL); None also when the
/// row does not exist, so callers check existence separately where it matters.
fn stored(c: &mut Client, table: &str, col: &str, id: i32) -> Option<String> {
    c.query_opt(&format!("SELECT {col}::text FROM {table} WHERE id = $1"), &[&id]).unwrap().and_then(|r| r.get(0))
}

fn row_exists(c: &mut Client, table: &str, id: i32) -> bool {
    c.query_one(&format!("SELECT EXISTS (SELECT FROM {table} WHERE id = $1)"), &[&id]).unwrap().get(0)
}

const DIST_HINT: &str = "Keys must be stages or their aliases (pre-seed, seed, series-a, series-b, series-c+); weights \
     numbers from 0 to 1 that sum to 1 (+/- 1e-6). SELECT stage_norm.stage_distribution_errors(value) lists every reason.";
const ARRAY_HINT: &str =
    "Use one of: pre-seed, seed, series-a, series-b, series-c+; or ask a DBA to add an alias with stage_norm.add_alias(alias, stage).";

fn unknown(i: usize, v: &str) -> String {
    format!("element {i} \"{v}\" is not a known investment stage")
}

/// Enforce on a jsonb, a text[] and a varchar(12)[] column of a table outside `public`: SQLSTATE
/// 23514, the SCHEMA/TABLE/COLUMN fields, the exact message, DETAIL (at most 5 reasons, then
/// "and N more") and HINT; nothing of a failed multi-row INSERT is stored; the session goes on.
#[test]
fn rejections_carry_fields_reasons_and_hint() {
    let mut c = fresh_db("sn_dist_errors");
    c.batch_execute(
        "CREATE SCHEMA fund;
         CREATE TABLE fund.deals (id int PRIMARY KEY, alloc jsonb, path text[], tags varchar(12)[]);
         SELECT stage_norm.attach('fund.deals', 'alloc', 'path', 'tags');
         SET stage_norm.mode = enforce;",
    )
    .unwrap();

    // jsonb: an unknown key and a sum off by 0.1.
    let e = db_error(c.execute(r#"INSERT INTO fund.deals VALUES (1, '{"growth": 0.5, "seed": 0.4}', NULL, NULL)"#, &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!(e.severity(), "ERROR");
    assert_eq!((e.schema(), e.table(), e.column()), (Some("fund"), Some("deals"), Some("alloc")));
    assert_eq!(e.message(), r#"stage distribution in column "alloc" of table "deals" is not valid: unknown key "growth" (and 1 more)"#);
    assert_eq!(
        e.detail(),
        Some(r#"stage_norm enforces on table fund.deals. Reasons (2): unknown key "growth"; weights sum to 0.9 (must be 1 +/- 1e-6)."#)
    );
    assert_eq!(e.hint(), Some(DIST_HINT));

    // jsonb: percentages, a string weight, not an object.
    let e = db_error(c.execute(r#"INSERT INTO fund.deals VALUES (1, '{"Seed": 50, "series a": 50}', NULL, NULL)"#, &[]).unwrap_err());
    assert_eq!(
        e.detail(),
        Some("stage_norm enforces on table fund.deals. Reasons (1): weights sum to 100: looks like percentages (divide each weight by 100).")
    );
    let e = db_error(c.execute(r#"INSERT INTO fund.deals VALUES (1, '{"seed": "0.5", "Series A": 0.5}', NULL, NULL)"#, &[]).unwrap_err());
    assert_eq!(e.message(), r#"stage distribution in column "alloc" of table "deals" is not valid: weight of "seed" is not a number (a string)"#);
    let e = db_error(c.execute(r#"INSERT INTO fund.deals VALUES (1, '[{"seed": 1}]', NULL, NULL)"#, &[]).unwrap_err());
    assert_eq!(e.detail(), Some("stage_norm enforces on table fund.deals. Reasons (1): not a JSON object (an array)."));
    let e = db_error(c.execute("INSERT INTO fund.deals VALUES (1, '{}', NULL, NULL)", &[]).unwrap_err());
    assert_eq!(e.detail(), Some("stage_norm enforces on table fund.deals. Reasons (1): empty object."));

    // text[]: 8 unknown elements, 5 shown.
    let e = db_error(c.execute("INSERT INTO fund.deals VALUES (2, NULL, '{a,b,c,d,e,f,g,h}', NULL)", &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!((e.schema(), e.table(), e.column()), (Some("fund"), Some("deals"), Some("path")));
    assert_eq!(e.message(), format!("stage array in column \"path\" of table \"deals\" is not valid: {} (and 7 more)", unknown(1, "a")));
    let shown: Vec<String> = ["a", "b", "c", "d", "e"].iter().enumerate().map(|(i, v)| unknown(i + 1, v)).collect();
    assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table fund.deals. Reasons (8): {}; and 3 more.", shown.join("; ")));
    assert_eq!(e.hint(), Some(ARRAY_HINT));
    // Exactly 5 reasons: no "more".
    let e = db_error(c.execute("INSERT INTO fund.deals VALUES (2, NULL, '{a,b,Seed,c,d,e}', NULL)", &[]).unwrap_err());
    let shown: Vec<String> = [(1, "a"), (2, "b"), (4, "c"), (5, "d"), (6, "e")].iter().map(|(i, v)| unknown(*i, v)).collect();
    assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table fund.deals. Reasons (5): {}.", shown.join("; ")));

    // varchar(12)[]: one unknown among known variants; positions count NULLs.
    let e = db_error(c.execute("INSERT INTO fund.deals VALUES (3, NULL, NULL, '{Seed,NULL,growth}')", &[]).unwrap_err());
    assert_eq!((e.schema(), e.table(), e.column()), (Some("fund"), Some("deals"), Some("tags")));
    assert_eq!(e.message(), format!("stage array in column \"tags\" of table \"deals\" is not valid: {}", unknown(3, "growth")));
    assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table fund.deals. Reasons (1): {}.", unknown(3, "growth")));
    assert_eq!(e.hint(), Some(ARRAY_HINT));

    // Two bad columns in one row: the first governed column is reported.
    let e = db_error(c.execute(r#"INSERT INTO fund.deals VALUES (4, '{"x": 1}', '{y}', '{z}')"#, &[]).unwrap_err());
    assert_eq!(e.column(), Some("alloc"));
    // A multi-row INSERT with one bad row stores nothing.
    let e = db_error(
        c.execute(r#"INSERT INTO fund.deals VALUES (5, '{"Seed": 1}', '{seed}', NULL), (6, NULL, '{Seed,x}', NULL)"#, &[])
            .unwrap_err(),
    );
    assert_eq!((e.column(), e.code()), (Some("path"), &SqlState::CHECK_VIOLATION));
    let n: i64 = c.query_one("SELECT count(*) FROM fund.deals", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    // The session goes on; a valid row is stored canonical.
    c.execute(r#"INSERT INTO fund.deals VALUES (7, '{"Seed": 1}', '{Seed}', '{"Series A"}')"#, &[]).unwrap();
    let r = c.query_one("SELECT alloc::text, path::text, tags::text FROM fund.deals WHERE id = 7", &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)), (r#"{"seed": 1}"#.into(), "{seed}".into(), "{series-a}".into()));
    // Rejections are counted.
    let n = counts(&mut c, "fund.deals");
    assert_eq!(n.rejected, 10, "{n:?}");
}

/// One column kind through every mode.
struct ModeCase {
    db: &'static str,
    ty: &'static str,
    what: &'static str,
    canonical: &'static str,
    messy: &'static str,
    messy_canonical: &'static str,
    invalid: &'static str,
    /// `invalid` as stored by off and shadow.
    invalid_as_is: &'static str,
    /// `invalid` as stored by warn (a stage array's known elements rewritten).
    invalid_warn: &'static str,
    /// The first reason, and the DETAIL's reasons part.
    first_reason: String,
    reasons: String,
}

fn run_modes(k: ModeCase) {
    let mut admin = fresh_db(k.db);
    admin.batch_execute(&format!("CREATE TABLE m (id int PRIMARY KEY, v {}); SELECT stage_norm.attach('m', 'v');", k.ty)).unwrap();
    let (mut c, notices) = connect_with_notices(k.db);
    let literal = |s: &str| format!("'{}'::{}", s.replace('\'', "''"), k.ty);
    let as_text = |c: &mut Client, s: &str| -> String { c.query_one(&format!("SELECT ({})::text", literal(s)), &[]).unwrap().get(0) };
    let canonical_text = as_text(&mut c, k.canonical);
    let messy_text = as_text(&mut c, k.messy);
    assert_ne!(messy_text, k.messy_canonical, "the messy value must differ from its canonical form");

    for (m, mode) in ["off", "shadow", "warn", "enforce"].into_iter().enumerate() {
        let base = 10 * m as i32;
        c.batch_execute(&format!("SET stage_norm.mode = {mode}")).unwrap();
        take(&notices);
        let before = counts(&mut c, "m");
        // One statement per value, so that each one's notices are known.
        c.execute(&format!("INSERT INTO m VALUES ({}, {})", base + 1, literal(k.canonical)), &[]).unwrap();
        c.execute(&format!("INSERT INTO m VALUES ({}, {})", base + 2, literal(k.messy)), &[]).unwrap();
        c.execute(&format!("INSERT INTO m VALUES ({}, NULL)", base + 4), &[]).unwrap();
        assert!(take(&notices).is_empty(), "{}, {mode}: valid values raise no notice", k.ty);
        let invalid = c.execute(&format!("INSERT INTO m VALUES ({}, {})", base + 3, literal(k.invalid)), &[]);
        let got = take(&notices);
        let delta = counts(&mut c, "m") - before;

        assert_eq!(stored(&mut c, "m", "v", base + 1).as_deref(), Some(canonical_text.as_str()), "{}, {mode}", k.ty);
        assert!(row_exists(&mut c, "m", base + 4) && stored(&mut c, "m", "v", base + 4).is_none());
        let messy_stored = stored(&mut c, "m", "v", base + 2);
        let want_messy = if m < 2 { messy_text.as_str() } else { k.messy_canonical };
        assert_eq!(messy_stored.as_deref(), Some(want_messy), "{}, {mode}: the valid variant", k.ty);
        let expect = match mode {
            "off" => Counts::default(),
            "shadow" => Counts { passed: 1, would_normalize: 1, would_reject: 1, nulls: 1, ..Default::default() },
            "warn" => Counts { passed: 1, normalized: 1, warned: 1, nulls: 1, ..Default::default() },
            _ => Counts { passed: 1, normalized: 1, rejected: 1, nulls: 1, ..Default::default() },
        };
        assert_eq!(delta, expect, "{}, {mode}: counter deltas", k.ty);
        match mode {
            "off" | "shadow" => {
                invalid.unwrap_or_else(|e| panic!("{}, {mode}: {e}", k.ty));
                assert_eq!(stored(&mut c, "m", "v", base + 3).as_deref(), Some(k.invalid_as_is), "{}, {mode}", k.ty);
                assert!(got.is_empty(), "{}, {mode}: no notice expected, got {got:?}", k.ty);
            }
            "warn" => {
                invalid.unwrap_or_else(|e| panic!("{}, warn: {e}", k.ty));
                assert_eq!(stored(&mut c, "m", "v", base + 3).as_deref(), Some(k.invalid_warn), "{}, warn", k.ty);
                assert_eq!(got.len(), 1, "{}, warn: exactly one WARNING, got {got:?}", k.ty);
                let w = &got[0];
                assert_eq!((w.severity(), w.code()), ("WARNING", &SqlState::WARNING));
                assert_eq!(w.message(), format!("{} in column \"v\" of table \"m\" is not valid: {}", k.what, k.first_reason));
                let stored_how = if k.what == "stage array" {
                    "the array was stored with its known stages rewritten and the rest as they are"
                } else {
                    "the value was stored as it is"
                };
                assert_eq!(
                    w.detail().unwrap(),
                    format!("stage_norm mode is warn for table public.m: {stored_how}. Reasons {}.", k.reasons)
                );
                assert_eq!(w.hint(), Some(if k.what == "stage array" { ARRAY_HINT } else { DIST_HINT }));
            }
            _ => {
                let e = db_error(invalid.unwrap_err());
                assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("v")));
                assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table public.m. Reasons {}.", k.reasons));
                assert!(!row_exists(&mut c, "m", base + 3), "{}: a rejected row is not stored", k.ty);
                assert!(got.is_empty(), "{}, enforce: the error only, got {got:?}", k.ty);
            }
        }
    }
    // Another session sees exactly what was stored; its own counters are empty.
    assert_eq!(counts(&mut admin, "m"), Counts::default());
    let n: i64 = admin.query_one("SELECT count(*) FROM m", &[]).unwrap().get(0);
    assert_eq!(n, 15);
}

#[test]
fn every_mode_on_a_jsonb_column() {
    run_modes(ModeCase {
        db: "sn_dist_modes_jsonb",
        ty: "jsonb",
        what: "stage distribution",
        canonical: r#"{"seed": 0.25, "series-a": 0.75}"#,
        messy: r#"{"Seed": 0.5, "series a": 0.25, "Series-A": 0.25}"#,
        messy_canonical: r#"{"seed": 0.5, "series-a": 0.50}"#,
        invalid: r#"{"growth": 0.5, "seed": 0.4}"#,
        invalid_as_is: r#"{"seed": 0.4, "growth": 0.5}"#,
        invalid_warn: r#"{"seed": 0.4, "growth": 0.5}"#,
        first_reason: r#"unknown key "growth" (and 1 more)"#.into(),
        reasons: r#"(2): unknown key "growth"; weights sum to 0.9 (must be 1 +/- 1e-6)"#.into(),
    });
}

#[test]
fn every_mode_on_a_text_array_column() {
    run_modes(ModeCase {
        db: "sn_dist_modes_text_arr",
        ty: "text[]",
        what: "stage array",
        canonical: "{seed,series-a,NULL}",
        messy: r#"{Seed,NULL,"series b","SERIES C+"}"#,
        messy_canonical: "{seed,NULL,series-b,series-c+}",
        invalid: r#"{"Pre Seed",growth,NULL,x}"#,
        invalid_as_is: r#"{"Pre Seed",growth,NULL,x}"#,
        invalid_warn: "{pre-seed,growth,NULL,x}",
        first_reason: format!("{} (and 1 more)", unknown(2, "growth")),
        reasons: format!("(2): {}; {}", unknown(2, "growth"), unknown(4, "x")),
    });
}

#[test]
fn every_mode_on_a_varchar_array_column() {
    run_modes(ModeCase {
        db: "sn_dist_modes_varchar_arr",
        ty: "varchar(12)[]",
        what: "stage array",
        canonical: "{pre-seed}",
        messy: r#"[0:1]={"Pre Seed","seed round"}"#,
        messy_canonical: "[0:1]={pre-seed,seed}",
        invalid: r#"{x,"Seed Round"}"#,
        invalid_as_is: r#"{x,"Seed Round"}"#,
        invalid_warn: "{x,seed}",
        first_reason: unknown(1, "x"),
        reasons: format!("(1): {}", unknown(1, "x")),
    });
}

/// Merged weights are exact sums (as numeric adds them: the larger scale); a weight within
/// 1e-6 of a sum of 1 is kept as it is, never rescaled; what the trigger stores is exactly what
/// `normalize_stage_distribution` returns.
#[test]
fn weights_are_exact() {
    let mut c = fresh_db("sn_dist_exact");
    c.batch_execute(
        "CREATE TABLE ex (id int PRIMARY KEY, alloc jsonb, input jsonb);
         SELECT stage_norm.attach('ex', 'alloc');
         SET stage_norm.mode = enforce;",
    )
    .unwrap();
    let cases: &[(&str, &str)] = &[
        (r#"{"seed": 0.1, "Seed": 0.2, "series a": 0.7}"#, r#"{"seed": 0.3, "series-a": 0.7}"#),
        (r#"{"seed": 0.9999995}"#, r#"{"seed": 0.9999995}"#),
        (r#"{"seed": 0.10, "Seed": 0.200, "series a": 0.7}"#, r#"{"seed": 0.300, "series-a": 0.7}"#),
        (r#"{"Seed": 1e-1, "seed": 2E-1, "Series A": 0.7}"#, r#"{"seed": 0.3, "series-a": 0.7}"#),
        (r#"{"SEED": 0.5, "seed round": 0.4999995}"#, r#"{"seed": 0.9999995}"#),
        (r#"{"Seed": 1.0000000}"#, r#"{"seed": 1.0000000}"#),
        (r#"{"Seed": -0, "series a": 1}"#, r#"{"seed": 0, "series-a": 1}"#),
        (
            r#"{"Seed": 0.00000000000000000001, "seed": 0.00000000000000000002, "series a": 0.99999999999999999997}"#,
            r#"{"seed": 0.00000000000000000003, "series-a": 0.99999999999999999997}"#,
        ),
        (
            r#"{"SEED": 0.3333333333333333333333, "seed round": 0.3333333333333333333333, "Seed": 0.3333333333333333333334}"#,
            r#"{"seed": 1.0000000000000000000000}"#,
        ),
        (r#"{"Pre Seed": 0.125, "seed": 0.125, "Series B": 0.25, "series c+": 0.5}"#, r#"{"seed": 0.125, "pre-seed": 0.125, "series-b": 0.25, "series-c+": 0.5}"#),
    ];
    for (i, (input, want)) in cases.iter().enumerate() {
        let id = i as i32 + 1;
        c.execute("INSERT INTO ex VALUES ($1, $2::text::jsonb, $2::text::jsonb)", &[&id, input])
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(stored(&mut c, "ex", "alloc", id).as_deref(), Some(*want), "{input}");
    }
    let r = c.query_one("SELECT alloc->>'seed', (alloc->'seed')::numeric = 0.3 FROM ex WHERE id = 3", &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, bool>(1)), ("0.300".to_string(), true));
    // Same bytes as the SQL function (jsonb equality compares the stored form, scale included
    // through the text).
    let bad: Vec<i32> = c
        .query(
            "SELECT id FROM ex WHERE alloc::text IS DISTINCT FROM stage_norm.normalize_stage_distribution(input)::text
                OR NOT stage_norm.is_valid_stage_distribution(alloc)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(bad.is_empty(), "stored values differ from normalize_stage_distribution: {bad:?}");
    // 1,000 keys that all name seed: merged exactly.
    let many: Vec<String> = (0..1000).map(|i| format!("\"seed{}\": 0.001", "_".repeat(i))).collect();
    let doc = format!("{{{}}}", many.join(", "));
    c.execute("INSERT INTO ex VALUES (100, $1::text::jsonb)", &[&doc]).unwrap();
    assert_eq!(stored(&mut c, "ex", "alloc", 100).as_deref(), Some(r#"{"seed": 1.000}"#));
    // Just beyond the bound: rejected with the exact sum.
    let e = db_error(c.execute(r#"INSERT INTO ex VALUES (101, '{"seed": 0.5, "Seed": 0.5000011}')"#, &[]).unwrap_err());
    // Every reason: the merged weight above 1, and the total.
    assert_eq!(
        e.detail(),
        Some("stage_norm enforces on table public.ex. Reasons (2): 2 keys name the same stage and their weights add up to 1.0000011, above 1; weights sum to 1.0000011 (must be 1 +/- 1e-6).")
    );
    let e = db_error(c.execute(r#"INSERT INTO ex VALUES (101, '{"seed": 0.999998}')"#, &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
}

/// Merging keys can make one weight exceed 1 while the total stays within 1 + 1e-6 (found by
/// this test): such a distribution is invalid, with its own reason, and is rejected under
/// enforce; what the trigger stores is always a valid distribution, and normalizing twice is
/// normalizing once.
#[test]
fn merged_weight_above_one_is_not_stored() {
    let mut c = fresh_db("sn_dist_merge_above_one");
    c.batch_execute(
        "CREATE TABLE mo (id int PRIMARY KEY, alloc jsonb);
         SELECT stage_norm.attach('mo', 'alloc');
         SET stage_norm.mode = enforce;",
    )
    .unwrap();
    let e = db_error(c.execute(r#"INSERT INTO mo VALUES (1, '{"SEED": 0.5, "seed round": 0.5000010}')"#, &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!(
        e.detail(),
        Some("stage_norm enforces on table public.mo. Reasons (1): 2 keys name the same stage and their weights add up to 1.0000010, above 1.")
    );
    let invalid: i64 = c
        .query_one("SELECT count(*) FROM mo WHERE NOT stage_norm.is_valid_stage_distribution(alloc)", &[])
        .unwrap()
        .get(0);
    assert_eq!(invalid, 0, "stored: {:?}", stored(&mut c, "mo", "alloc", 1));
    let n: Option<String> = c
        .query_one(
            r#"SELECT stage_norm.normalize_stage_distribution(stage_norm.normalize_stage_distribution('{"SEED": 0.5, "seed round": 0.5000010}'))::text"#,
            &[],
        )
        .unwrap()
        .get(0);
    let once: Option<String> = c
        .query_one(r#"SELECT stage_norm.normalize_stage_distribution('{"SEED": 0.5, "seed round": 0.5000010}')::text"#, &[])
        .unwrap()
        .get(0);
    assert_eq!(n, once, "normalize_stage_distribution is not idempotent");
}

/// Under enforce, an invalid value stored earlier (under warn) is left alone by an UPDATE that
/// does not change it (even one that writes the same jsonb in another key order), but an UPDATE
/// that writes a new invalid value is rejected; valid new values are rewritten.
#[test]
fn updates_leave_unchanged_values_alone() {
    let mut c = fresh_db("sn_dist_update");
    c.batch_execute(
        r#"CREATE TABLE u (id int PRIMARY KEY, note text, alloc jsonb, path text[]);
           SELECT stage_norm.attach('u', 'alloc', 'path');
           SET stage_norm.mode = warn;
           INSERT INTO u VALUES (1, 'a', '{"growth": 0.5, "seed": 0.4}', '{Seed,growth}');
           SET stage_norm.mode = enforce;"#,
    )
    .unwrap();
    let both = |c: &mut Client| (stored(c, "u", "alloc", 1), stored(c, "u", "path", 1));
    let legacy = (Some(r#"{"seed": 0.4, "growth": 0.5}"#.to_string()), Some("{seed,growth}".to_string()));
    assert_eq!(both(&mut c), legacy);

    let before = counts(&mut c, "u");
    assert_eq!(c.execute("UPDATE u SET note = 'b' WHERE id = 1", &[]).unwrap(), 1);
    assert_eq!(counts(&mut c, "u") - before, Counts { unchanged: 2, ..Default::default() });
    assert_eq!(both(&mut c), legacy);
    // The same jsonb value, written in another order: unchanged.
    let before = counts(&mut c, "u");
    c.execute(r#"UPDATE u SET alloc = '{"seed": 0.4, "growth": 0.5}', path = ARRAY['seed', 'growth'] WHERE id = 1"#, &[]).unwrap();
    assert_eq!(counts(&mut c, "u") - before, Counts { unchanged: 2, ..Default::default() });

    // A new invalid value: rejected, the row keeps its values.
    let before = counts(&mut c, "u");
    let e = db_error(c.execute(r#"UPDATE u SET alloc = '{"growth": 0.5, "seed": 0.5}' WHERE id = 1"#, &[]).unwrap_err());
    assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("alloc")));
    assert_eq!(e.detail(), Some(r#"stage_norm enforces on table public.u. Reasons (1): unknown key "growth"."#));
    let e = db_error(c.execute("UPDATE u SET path = array_append(path, 'Series A') WHERE id = 1", &[]).unwrap_err());
    assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("path")));
    assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table public.u. Reasons (1): {}.", unknown(2, "growth")));
    assert_eq!(counts(&mut c, "u") - before, Counts { unchanged: 1, rejected: 2, ..Default::default() });
    assert_eq!(both(&mut c), legacy);

    // A new valid value in one column: rewritten; the other, invalid and unchanged, stays.
    let before = counts(&mut c, "u");
    c.execute("UPDATE u SET path = '{\"series a\",NULL,Seed}' WHERE id = 1", &[]).unwrap();
    assert_eq!(counts(&mut c, "u") - before, Counts { normalized: 1, unchanged: 1, ..Default::default() });
    assert_eq!(both(&mut c), (legacy.0.clone(), Some("{series-a,NULL,seed}".to_string())));
    c.execute(r#"UPDATE u SET alloc = '{"Series B": 0.5, "series-b": 0.5}' WHERE id = 1"#, &[]).unwrap();
    assert_eq!(both(&mut c), (Some(r#"{"series-b": 1.0}"#.to_string()), Some("{series-a,NULL,seed}".to_string())));
    // Setting a column to NULL is fine.
    let before = counts(&mut c, "u");
    c.execute("UPDATE u SET alloc = NULL, path = NULL WHERE id = 1", &[]).unwrap();
    assert_eq!(counts(&mut c, "u") - before, Counts { nulls: 2, ..Default::default() });
}

/// COPY ... FROM STDIN into governed jsonb and text[] columns: under warn every valid row
/// arrives canonical and each invalid value is stored and warned about; under enforce one
/// invalid row fails the whole COPY with 23514.
#[test]
fn copy_from_stdin() {
    let db = "sn_dist_copy";
    let mut admin = fresh_db(db);
    admin
        .batch_execute("CREATE TABLE cp (id int PRIMARY KEY, alloc jsonb, path text[]); SELECT stage_norm.attach('cp', 'alloc', 'path');")
        .unwrap();
    let (mut c, notices) = connect_with_notices(db);
    let row = |id: i32| -> String {
        match id % 100 {
            7 => format!("{id}\t{{\"seed\": 0.5, \"mystery\": 0.5}}\t{{Seed,\"Series A\"}}\n"),
            8 => format!("{id}\t{{\"Seed\": 0.5, \"seed round\": 0.25, \"Series A\": 0.25}}\t{{\"Pre Seed\",unknown,NULL}}\n"),
            _ => format!("{id}\t{{\"Seed\": 0.5, \"series a\": 0.5}}\t{{Seed,\"Series A\",NULL}}\n"),
        }
    };
    let copy = |c: &mut Client, ids: std::ops::RangeInclusive<i32>| -> Result<u64, postgres::Error> {
        let data: String = ids.map(row).collect();
        let mut w = c.copy_in("COPY cp (id, alloc, path) FROM STDIN").unwrap();
        w.write_all(data.as_bytes()).unwrap();
        w.finish()
    };

    c.batch_execute("SET stage_norm.mode = warn").unwrap();
    take(&notices);
    let before = counts(&mut c, "cp");
    assert_eq!(copy(&mut c, 1..=100).unwrap(), 100);
    assert_eq!(counts(&mut c, "cp") - before, Counts { normalized: 198, warned: 2, ..Default::default() });
    let got = take(&notices);
    let messages: Vec<&str> = got.iter().map(|n| n.message()).collect();
    assert_eq!(
        messages,
        [
            r#"stage distribution in column "alloc" of table "cp" is not valid: unknown key "mystery""#.to_string(),
            format!("stage array in column \"path\" of table \"cp\" is not valid: {}", unknown(2, "unknown")),
        ]
    );
    assert_eq!(stored(&mut c, "cp", "alloc", 7).as_deref(), Some(r#"{"seed": 0.5, "mystery": 0.5}"#));
    assert_eq!(stored(&mut c, "cp", "path", 7).as_deref(), Some("{seed,series-a}"));
    assert_eq!(stored(&mut c, "cp", "alloc", 8).as_deref(), Some(r#"{"seed": 0.75, "series-a": 0.25}"#));
    assert_eq!(stored(&mut c, "cp", "path", 8).as_deref(), Some("{pre-seed,unknown,NULL}"));
    let odd: Vec<i32> = c
        .query(
            "SELECT id FROM cp WHERE id NOT IN (7, 8) AND (alloc::text <> '{\"seed\": 0.5, \"series-a\": 0.5}'
                                                         OR path::text <> '{seed,series-a,NULL}')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(odd.is_empty(), "rows not stored canonical: {odd:?}");

    // enforce: row 1007 fails the COPY; nothing of it is stored.
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let e = db_error(copy(&mut c, 1001..=1050).unwrap_err());
    assert_eq!((e.code(), e.table(), e.column()), (&SqlState::CHECK_VIOLATION, Some("cp"), Some("alloc")));
    assert_eq!(e.message(), r#"stage distribution in column "alloc" of table "cp" is not valid: unknown key "mystery""#);
    let n: i64 = c.query_one("SELECT count(*) FROM cp WHERE id > 1000", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    // Without the invalid rows, under enforce: all canonical.
    let data: String = (2001..=2500).filter(|i| i % 100 != 7 && i % 100 != 8).map(row).collect();
    let mut w = c.copy_in("COPY cp (id, alloc, path) FROM STDIN").unwrap();
    w.write_all(data.as_bytes()).unwrap();
    assert_eq!(w.finish().unwrap(), 490);
    let ok: i64 = c
        .query_one(
            "SELECT count(*) FROM cp WHERE id > 2000 AND stage_norm.is_valid_stage_distribution(alloc)
                AND stage_norm.is_canonical_stage_array(path) AND alloc::text = '{\"seed\": 0.5, \"series-a\": 0.5}'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ok, 490);
    assert!(take(&notices).is_empty());
}

/// A varchar(12)[] value as the client sends and reads it.
type Tags = Option<Vec<Option<String>>>;
/// A text[] value as the client sends and reads it.
type Paths = Option<Vec<String>>;

/// Bound parameters: the jsonb as a text parameter (cast in SQL; prepared once, run many
/// times), text[] as `Vec<String>`, varchar(12)[] as `Vec<Option<String>>`, NULLs; values come
/// back canonical through the binary protocol.
#[test]
fn bound_parameters() {
    let mut c = fresh_db("sn_dist_params");
    c.batch_execute(
        "CREATE TABLE pp (id int PRIMARY KEY, alloc jsonb, path text[], tags varchar(12)[]);
         SELECT stage_norm.attach('pp', 'alloc', 'path', 'tags');
         SET stage_norm.mode = enforce;",
    )
    .unwrap();
    let ins = c.prepare("INSERT INTO pp VALUES ($1, $2::text::jsonb, $3, $4)").unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let rows: Vec<(i32, Option<&str>, Paths, Tags)> = vec![
        (1, Some(r#"{"Seed": 0.10, "seed": 0.200, "Series A": 0.7}"#), Some(s(&["Series A", "pre_seed"])), Some(vec![Some("Seed".into()), None])),
        (2, Some(r#"{"seed": 1}"#), Some(Vec::new()), Some(vec![None, Some("SERIES C+".into())])),
        (3, None, None, None),
        (4, Some(r#"{"series b": 1}"#), Some(s(&["seed", "Ｓｅｒｉｅｓ　Ａ"])), Some(vec![Some("pre-seed".into())])),
    ];
    for (id, a, p, t) in &rows {
        c.execute(&ins, &[id, a, p, t]).unwrap_or_else(|e| panic!("row {id}: {e}"));
    }
    let got: Vec<(i32, Option<String>, Paths, Tags)> = c
        .query("SELECT id, alloc::text, path, tags FROM pp ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some(r#"{"seed": 0.300, "series-a": 0.7}"#.into()), Some(s(&["series-a", "pre-seed"])), Some(vec![Some("seed".into()), None])),
            (2, Some(r#"{"seed": 1}"#.into()), Some(Vec::new()), Some(vec![None, Some("series-c+".into())])),
            (3, None, None, None),
            (4, Some(r#"{"series-b": 1}"#.into()), Some(s(&["seed", "series-a"])), Some(vec![Some("pre-seed".into())])),
        ]
    );
    let n = counts(&mut c, "pp");
    assert_eq!(n, Counts { passed: 3, normalized: 6, nulls: 3, ..Default::default() });
    // Invalid parameters are rejected with the same fields.
    let e = db_error(c.execute(&ins, &[&5i32, &Some(r#"{"seed": 0.5}"#), &None::<Vec<String>>, &None::<Vec<Option<String>>>]).unwrap_err());
    assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("alloc")));
    assert_eq!(e.detail(), Some("stage_norm enforces on table public.pp. Reasons (1): weights sum to 0.5 (must be 1 +/- 1e-6)."));
    let e = db_error(
        c.execute(&ins, &[&5i32, &None::<&str>, &Some(s(&["seed", "Later"])), &None::<Vec<Option<String>>>]).unwrap_err(),
    );
    assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("path")));
    assert_eq!(e.detail().unwrap(), format!("stage_norm enforces on table public.pp. Reasons (1): {}.", unknown(2, "Later")));
    // The element bound check of varchar(12)[] is PostgreSQL's, before the trigger.
    let e = db_error(
        c.execute(&ins, &[&5i32, &None::<&str>, &None::<Vec<String>>, &Some(vec![Some("Series A Round 2".to_string())])]).unwrap_err(),
    );
    assert_eq!(e.code(), &SqlState::STRING_DATA_RIGHT_TRUNCATION);
}

/// Large values under enforce: a 200,000-element text[] of messy labels is stored canonical,
/// element for element; a 100,000-key invalid distribution, and values whose keys or elements
/// are 100,000 characters long, are rejected with a short DETAIL.
#[test]
fn large_values_are_bounded() {
    let mut c = fresh_db("sn_dist_large");
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, alloc jsonb, path text[]);
         SELECT stage_norm.attach('big', 'alloc', 'path');
         SET stage_norm.mode = enforce;",
    )
    .unwrap();
    let messy = ["Series A", "seed round", "Pre Seed", "SERIES B", "Series C Plus", "seed", "pre_seed", "Series B–1"];
    let canonical = ["series-a", "seed", "pre-seed", "series-b", "series-c+", "seed", "pre-seed", "series-b"];
    let n = 200_000usize;
    let input: Vec<String> = (0..n).map(|i| messy[(i * 7 + i / 3) % messy.len()].to_string()).collect();
    let want: Vec<String> = (0..n).map(|i| canonical[(i * 7 + i / 3) % canonical.len()].to_string()).collect();
    c.execute("INSERT INTO big VALUES (1, NULL, $1)", &[&input]).unwrap();
    let r = c
        .query_one(
            "SELECT cardinality(path), path[1], path[2], path[199999], path[200000], stage_norm.is_canonical_stage_array(path),
                    array_position(path, NULL) IS NULL
               FROM big WHERE id = 1",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 200_000);
    assert_eq!(
        (r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, String>(3), r.get::<_, String>(4)),
        (want[0].clone(), want[1].clone(), want[199_998].clone(), want[199_999].clone())
    );
    assert!(r.get::<_, bool>(5) && r.get::<_, bool>(6));
    let back: Vec<String> = c.query_one("SELECT path FROM big WHERE id = 1", &[]).unwrap().get(0);
    assert!(back == want, "the stored array differs from the expected canonical array");
    assert_eq!(counts(&mut c, "big"), Counts { normalized: 1, nulls: 1, ..Default::default() });
    // Stored out of line: an UPDATE that keeps it is `unchanged`; one that appends a variant is
    // read (detoasted) and rewritten.
    c.execute("UPDATE big SET path = path WHERE id = 1", &[]).unwrap();
    assert_eq!(counts(&mut c, "big"), Counts { normalized: 1, nulls: 1, unchanged: 2, ..Default::default() });
    c.execute("UPDATE big SET path = path || 'SERIES C+'::text WHERE id = 1", &[]).unwrap();
    assert_eq!(counts(&mut c, "big"), Counts { normalized: 2, nulls: 1, unchanged: 3, ..Default::default() });
    let r = c.query_one("SELECT cardinality(path), path[200001], path[1] FROM big WHERE id = 1", &[]).unwrap();
    assert_eq!((r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2)), (200_001, "series-c+".to_string(), want[0].clone()));

    // 100,000 unknown keys whose weights sum to 1: 100,000 reasons, 5 shown.
    let keys: Vec<String> = (1..=100_000).map(|i| format!("\"k{i}\": 0.00001")).collect();
    let doc = format!("{{{}}}", keys.join(", "));
    let e = db_error(c.execute("INSERT INTO big VALUES (2, $1::text::jsonb, NULL)", &[&doc]).unwrap_err());
    assert_eq!((e.code(), e.column()), (&SqlState::CHECK_VIOLATION, Some("alloc")));
    assert_eq!(e.message(), r#"stage distribution in column "alloc" of table "big" is not valid: unknown key "k1" (and 99999 more)"#);
    let detail = e.detail().unwrap();
    assert_eq!(
        detail,
        r#"stage_norm enforces on table public.big. Reasons (100000): unknown key "k1"; unknown key "k2"; unknown key "k3"; unknown key "k4"; unknown key "k5"; and 99995 more."#
    );
    assert!(detail.len() < 2000, "{} bytes", detail.len());
    // The same built in SQL.
    let e = db_error(
        c.execute("INSERT INTO big SELECT 3, jsonb_object_agg('k' || i, 0.00001), NULL FROM generate_series(1, 100000) i", &[])
            .unwrap_err(),
    );
    assert_eq!(e.detail(), Some(detail));

    // Keys of 100,000 characters: quoted to 64 characters.
    let long: Vec<String> = (0..8).map(|i| format!("\"{}{}\": 0.125", (b'a' + i) as char, "x".repeat(100_000))).collect();
    let doc = format!("{{{}}}", long.join(", "));
    let e = db_error(c.execute("INSERT INTO big VALUES (4, $1::text::jsonb, NULL)", &[&doc]).unwrap_err());
    let detail = e.detail().unwrap();
    assert!(detail.len() < 2000 && e.message().len() < 300, "DETAIL {} bytes, message {} bytes", detail.len(), e.message().len());
    assert!(detail.starts_with(&format!("stage_norm enforces on table public.big. Reasons (8): unknown key \"a{}...\"; ", "x".repeat(63))), "{detail}");
    assert!(detail.ends_with("; and 3 more."), "{detail}");
    // Array elements of 100,000 characters.
    let elems: Vec<String> = (0..8).map(|i| format!("{i}{}", "y".repeat(100_000))).collect();
    let e = db_error(c.execute("INSERT INTO big VALUES (5, NULL, $1)", &[&elems]).unwrap_err());
    let detail = e.detail().unwrap();
    assert!(detail.len() < 2000 && e.message().len() < 300, "DETAIL {} bytes, message {} bytes", detail.len(), e.message().len());
    assert!(detail.contains(&unknown(1, &format!("0{}...", "y".repeat(63)))), "{detail}");
    assert!(detail.ends_with("; and 3 more."), "{detail}");
    let stored_rows: i64 = c.query_one("SELECT count(*) FROM big", &[]).unwrap().get(0);
    assert_eq!(stored_rows, 1);
}
