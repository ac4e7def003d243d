//! The write path seen through real client connections.
use stage_norm_client_tests::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn setup(db: &str) -> postgres::Client {
    let mut c = fresh_db(db);
    c.batch_execute(
        "CREATE TABLE pc (id bigint PRIMARY KEY, stage text);
         SELECT stage_norm.attach('pc', 'stage');",
    )
    .unwrap();
    c
}

/// A client sees SQLSTATE 23514 with the SCHEMA, TABLE and COLUMN fields, DETAIL and HINT.
#[test]
fn rejection_carries_error_fields() {
    let mut c = setup("sn_trig_fields");
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let e = c.execute("INSERT INTO pc VALUES (1, 'Series Z?')", &[]).unwrap_err();
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "23514");
    assert_eq!(db.schema(), Some("public"));
    assert_eq!(db.table(), Some("pc"));
    assert_eq!(db.column(), Some("stage"));
    assert!(db.message().contains("\"Series Z?\""), "{}", db.message());
    assert!(db.detail().is_some_and(|d| d.contains("public.pc")));
    assert!(db.hint().is_some_and(|h| h.contains("stage_norm.add_alias('Series Z?'")));
    // The session is usable afterwards, and thousands of rejections in a row are fine.
    for i in 0..2000 {
        assert!(c.execute("INSERT INTO pc VALUES ($1, 'nope')", &[&i64::from(i)]).is_err());
    }
    c.execute("INSERT INTO pc VALUES (1, 'Series Z')", &[]).unwrap();
    let stage: String = c.query_one("SELECT stage FROM pc WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(stage, "series-c+");
}

fn insert_unknown(c: &mut postgres::Client, id: i64) -> Result<u64, postgres::Error> {
    c.execute("INSERT INTO pc VALUES ($1, 'Mystery')", &[&id])
}

/// Mode changes reach an already-connected session at its next statement: ALTER SYSTEM +
/// pg_reload_conf (the emergency downgrade), and per-table overrides. ALTER DATABASE SET
/// reaches new sessions.
#[test]
fn mode_changes_reach_connected_sessions() {
    let mut admin = setup("sn_trig_modes");
    let mut app = connect("sn_trig_modes");
    admin.batch_execute("ALTER DATABASE sn_trig_modes SET stage_norm.mode = enforce").unwrap();
    let mut app2 = connect("sn_trig_modes");
    assert!(insert_unknown(&mut app, 1).is_ok(), "the old session keeps its database default (warn)");
    assert_eq!(insert_unknown(&mut app2, 2).unwrap_err().code().unwrap().code(), "23514");

    // The emergency downgrade of every table, exactly as the runbook says, from a new session.
    let mut dba = connect("postgres");
    // PostgreSQL 15 refuses ALTER SYSTEM for a setting whose library this session has not
    // loaded; with stage_norm preloaded (make test's client cluster) every session has it.
    let preload: String = dba.query_one("SHOW shared_preload_libraries", &[]).unwrap().get(0);
    if !preload.contains("stage_norm") {
        let e = dba.batch_execute("ALTER SYSTEM SET stage_norm.max_mode = 'warn'").unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42704", "{e}");
    }
    dba.batch_execute("LOAD 'stage_norm'").unwrap();
    dba.batch_execute("ALTER SYSTEM SET stage_norm.max_mode = 'warn'").unwrap();
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(insert_unknown(&mut app2, 3).is_ok(), "max_mode = warn must stop rejections");
    let mut dba = connect("postgres");
    dba.batch_execute("LOAD 'stage_norm'").unwrap();
    dba.batch_execute("ALTER SYSTEM RESET stage_norm.max_mode").unwrap();
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(insert_unknown(&mut app2, 4).is_err());

    // A per-table override, committed by another session, is seen at the next statement.
    admin.batch_execute("SELECT stage_norm.set_table_mode('pc', 'shadow')").unwrap();
    assert!(insert_unknown(&mut app2, 5).is_ok());
    admin.batch_execute("BEGIN; SELECT stage_norm.set_table_mode('pc', 'enforce');").unwrap();
    assert!(insert_unknown(&mut app, 6).is_ok(), "an uncommitted override is not seen");
    admin.batch_execute("COMMIT").unwrap();
    assert!(insert_unknown(&mut app, 7).is_err());
    // Even inside a transaction that began before the change.
    app2.batch_execute("BEGIN").unwrap();
    app2.execute("INSERT INTO pc VALUES (8, 'pre_seed')", &[]).unwrap();
    admin.batch_execute("SELECT stage_norm.set_table_mode('pc', 'warn')").unwrap();
    assert!(insert_unknown(&mut app2, 9).is_ok());
    app2.batch_execute("COMMIT").unwrap();
    admin.batch_execute("ALTER DATABASE sn_trig_modes RESET stage_norm.mode").unwrap();
}

/// Several writers while the mode flips: every statement either stores canonical values (known
/// labels are rewritten in warn and enforce), stores the unknown label as it is, or fails with
/// 23514; nothing else, and the server stays up.
#[test]
fn concurrent_writers_while_the_mode_flips() {
    let mut admin = setup("sn_trig_conc");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = connect("sn_trig_conc");
                let (mut ok, mut rejected) = (0u32, 0u32);
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) || i < 200 {
                    let id = w * 1_000_000 + i;
                    let label = if i % 3 == 0 { "Mystery" } else { "Series B-2 Round" };
                    match c.execute("INSERT INTO pc VALUES ($1, $2)", &[&id, &label]) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{e}");
                            assert_eq!(label, "Mystery", "a known label was rejected");
                            rejected += 1;
                        }
                    }
                    i += 1;
                }
                (ok, rejected)
            })
        })
        .collect();
    for round in 0..30 {
        let mode = ["enforce", "warn", "shadow", "off"][round % 4];
        admin.execute("SELECT stage_norm.set_table_mode('pc', $1)", &[&mode]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut rejected) = (0, 0);
    for w in writers {
        let (o, r) = w.join().expect("writer panicked");
        ok += o;
        rejected += r;
    }
    assert!(ok > 0 && rejected > 0, "ok={ok} rejected={rejected}: the flips were not exercised");
    let bad: i64 = admin
        .query_one(
            "SELECT count(*) FROM pc WHERE stage NOT IN ('series-b', 'Mystery', 'Series B-2 Round')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "a value was mangled");
    // After the last flip to enforce, every session rejects.
    admin.batch_execute("SELECT stage_norm.set_table_mode('pc', 'enforce')").unwrap();
    let mut late = connect("sn_trig_conc");
    assert!(insert_unknown(&mut late, -1).is_err());
}

/// A 1,000,000-row INSERT with 10% unknown values in warn mode: the client gets 3 warnings and
/// one summary with the exact count; the server log gets only sampled lines, never the client
/// warnings. Shadow mode sends the client nothing.
#[test]
fn warnings_are_bounded_and_the_log_is_sampled() {
    let mut c = setup("sn_trig_flood");
    drop(c.batch_execute("SELECT 1"));
    let before = server_log().len();
    let sql = "SET stage_norm.mode = warn; SET stage_norm.log_sample_rate = 0.001;
               INSERT INTO pc SELECT i, CASE WHEN i % 10 = 0 THEN 'mystery' ELSE 'Series A' END
                 FROM generate_series(1, 1000000) i;";
    let out = Command::new("psql").args(cli_args()).args(["-X", "-d", "sn_trig_flood", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("WARNING:")).collect();
    assert_eq!(warnings.len(), 4, "{stderr}");
    assert!(warnings[3].contains("99997 more unknown stage values"), "{}", warnings[3]);
    assert!(stderr.contains("This statement stored 100000 unknown values in all"));

    std::thread::sleep(std::time::Duration::from_millis(500));
    let text = server_log();
    let new = &text[before..];
    let sampled = new
        .lines()
        .filter(|l| l.contains("stage_norm: event=unknown_value table=public.pc column=stage mode=warn kind=text value=\"mystery\" sample_rate=0.001"))
        .count();
    assert!((20..=400).contains(&sampled), "expected about 100 sampled lines, got {sampled}");
    assert!(!new.contains("is not a known investment stage"), "client warnings leaked into the server log");

    let shadow = "SET stage_norm.mode = shadow; SET stage_norm.log_sample_rate = 0;
                  INSERT INTO pc SELECT i, 'mystery' FROM generate_series(2000001, 2001000) i;";
    let out = Command::new("psql").args(cli_args()).args(["-X", "-d", "sn_trig_flood", "-c", shadow]).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"), "shadow mode must be silent");
}
