//! stage_norm.migrate against real faults: a terminated backend, an immediate server stop, a
//! transaction holding row locks, concurrent writers through the trigger, a second run, a
//! cancel. After each: every value canonical or counted unknown, the row count unchanged, and
//! rollback_migration restores the exact original column (compared by checksum).
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use stage_norm_client_tests::{connect, dsn_for, fresh_db, pg_ctl};

const LABELS: [&str; 8] = ["Series A ", "pre_seed", "seriesB", "Seed Round", "SERIES C+", "growth", "series-a", "Pre Seed"];

/// `n` rows, 7 in 8 needing a rewrite (one label in 8 is canonical), one in 8 unknown
/// ("growth"), one in 50 NULL.
fn make_table(c: &mut Client, n: i64) {
    let labels = LABELS.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(",");
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS t; CREATE TABLE t (id bigint PRIMARY KEY, stage text);
         INSERT INTO t SELECT i, CASE WHEN i % 50 = 0 THEN NULL ELSE (ARRAY[{labels}])[1 + i % 8] END FROM generate_series(1, {n}) i;
         SELECT stage_norm.attach('t', 'stage'); ANALYZE t;"
    ))
    .unwrap();
}

fn checksum(c: &mut Client) -> (i64, String) {
    let r = c
        .query_one("SELECT count(*), md5(string_agg(id || ':' || coalesce(stage, '<null>'), ',' ORDER BY id)) FROM t", &[])
        .unwrap();
    (r.get(0), r.get(1))
}

/// Every value canonical, NULL, or unknown (left as it was); returns (non-canonical, unknown).
fn assert_clean(c: &mut Client) {
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT stage_norm.is_canonical_stage(stage)),
                    count(*) FILTER (WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL)
               FROM t",
            &[],
        )
        .unwrap();
    let (bad, unknown): (i64, i64) = (r.get(0), r.get(1));
    if bad != unknown {
        let left: Vec<(i64, Option<String>)> = c
            .query("SELECT id, stage FROM t WHERE NOT stage_norm.is_canonical_stage(stage) AND stage_norm.normalize_stage(stage) IS NOT NULL LIMIT 5", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        panic!("every non-canonical value left must be an unknown one: {bad} vs {unknown}; e.g. {left:?}");
    }
}

fn run_row(c: &mut Client) -> (i64, String, i32, i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT run_id, status, batches, rows_updated, coalesce(rows_before, -1), coalesce(rows_after, -1)
               FROM stage_norm.migration_runs WHERE table_name = 't' ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

/// Polls `q` (one boolean) every 10 ms until true, or panics after `secs`.
fn wait_for(c: &mut Client, q: &str, secs: u64) {
    let t0 = Instant::now();
    while !c.query_one(q, &[]).unwrap().get::<_, bool>(0) {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for: {q}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `CALL stage_norm.migrate(...)` on its own connection; returns its pid and the thread
/// (whose result is the CALL's outcome).
fn spawn_migrate(db: &str, args: &str) -> (i32, thread::JoinHandle<Result<(), postgres::Error>>) {
    let mut c = connect(db);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let call = format!("CALL stage_norm.migrate('t', 'stage'{args})");
    (pid, thread::spawn(move || c.batch_execute(&call)))
}

fn expected_updates(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM t WHERE stage_norm.normalize_stage(stage) IS NOT NULL AND stage IS DISTINCT FROM stage_norm.normalize_stage(stage)",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Resumes, then checks the result and rolls back to the original checksum.
fn resume_and_check(db: &str, before: &(i64, String), todo: i64) {
    let mut c = connect(db);
    c.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 2000)").unwrap();
    let (run, status, _, updated, rows_before, rows_after) = run_row(&mut c);
    assert_eq!(status, "finished");
    assert_eq!(updated, todo, "each changed row counted once across the interruption");
    assert_eq!((rows_before, rows_after), (before.0, before.0));
    assert_eq!(checksum(&mut c).0, before.0);
    assert_clean(&mut c);
    let keys: i64 = c
        .query_one("SELECT count(DISTINCT k) FROM stage_norm.migration_undo, unnest(keys) k WHERE run_id = $1", &[&run])
        .unwrap()
        .get(0);
    let undo: i64 = c
        .query_one("SELECT coalesce(sum(cardinality(old_values)), 0)::bigint FROM stage_norm.migration_undo WHERE run_id = $1", &[&run])
        .unwrap()
        .get(0);
    assert_eq!(undo, todo, "one undo value per changed row, none lost, none twice");
    assert_eq!(keys, todo, "every changed row's key once");
    c.batch_execute(&format!("CALL stage_norm.rollback_migration({run})")).unwrap();
    assert_eq!(&checksum(&mut c), before, "rollback restores the exact original column");
}

#[test]
fn terminated_backend_resumes_and_rolls_back() {
    let db = "migrate_kill";
    let mut c = fresh_db(db);
    make_table(&mut c, 200_000);
    let before = checksum(&mut c);
    let todo = expected_updates(&mut c);
    assert!(todo > 140_000, "{todo}");
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let (pid, h) = spawn_migrate(db, ", batch_size => 2000");
    wait_for(&mut c, "SELECT coalesce((SELECT batches >= 20 FROM stage_norm.migration_runs WHERE table_name = 't'), false)", 120);
    assert!(c.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get::<_, bool>(0));
    assert!(h.join().unwrap().is_err(), "the terminated CALL fails");
    let (_, status, batches, ..) = run_row(&mut c);
    assert_eq!(status, "running", "a terminated backend cannot mark its run");
    assert!(batches < 100, "terminated in the middle ({batches} of 100 batches)");
    // The progress view tells it from a live run: no backend holds the run's lock (#28).
    wait_for(&mut c, "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = (SELECT pid FROM stage_norm.migration_runs WHERE table_name = 't'))", 30);
    let shown: String = c.query_one("SELECT status FROM stage_norm.migration_progress WHERE table_name = 't'", &[]).unwrap().get(0);
    assert_eq!(shown, "interrupted");
    resume_and_check(db, &before, todo);
}

#[test]
fn immediate_stop_resumes_and_rolls_back() {
    let db = "migrate_crash";
    let mut c = fresh_db(db);
    make_table(&mut c, 200_000);
    let before = checksum(&mut c);
    let todo = expected_updates(&mut c);
    c.batch_execute("CHECKPOINT").unwrap();
    let (_, h) = spawn_migrate(db, ", batch_size => 2000");
    wait_for(&mut c, "SELECT coalesce((SELECT batches >= 20 FROM stage_norm.migration_runs WHERE table_name = 't'), false)", 120);
    pg_ctl(&["-m", "immediate", "-w", "stop"]);
    assert!(h.join().unwrap().is_err());
    drop(c);
    pg_ctl(&["-w", "start"]);
    let mut c = connect(db);
    let (_, status, batches, ..) = run_row(&mut c);
    assert_eq!(status, "running");
    // (the test cluster runs with synchronous_commit = off: the last few commits may be lost)
    assert!((5..100).contains(&batches), "crashed in the middle ({batches} batches committed)");
    resume_and_check(db, &before, todo);
}


#[test]
fn row_locks_held_elsewhere_are_retried_then_passed() {
    let db = "migrate_locks";
    let mut c = fresh_db(db);
    make_table(&mut c, 20_000);
    let todo = expected_updates(&mut c);
    let mut holder = connect(db);
    holder.batch_execute("BEGIN; SELECT * FROM t WHERE id BETWEEN 10000 AND 10010 FOR UPDATE").unwrap();
    let (_, h) = spawn_migrate(db, ", batch_size => 1000, lock_timeout_ms => 50");
    wait_for(&mut c, "SELECT coalesce((SELECT lock_retries >= 3 FROM stage_norm.migration_runs WHERE table_name = 't'), false)", 60);
    let (_, status, ..) = run_row(&mut c);
    assert_eq!(status, "running", "it waits (bounded) and retries, it does not fail");
    holder.batch_execute("COMMIT").unwrap();
    h.join().unwrap().unwrap();
    let (run, status, _, updated, ..) = run_row(&mut c);
    assert_eq!((status.as_str(), updated), ("finished", todo));
    let r = c
        .query_one(
            "SELECT r.lock_retries, max(b.attempts), min(b.rows_scanned) FILTER (WHERE b.attempts > 1)
               FROM stage_norm.migration_runs r JOIN stage_norm.migration_batches b USING (run_id)
              WHERE r.run_id = $1 GROUP BY r.lock_retries",
            &[&run],
        )
        .unwrap();
    let (retries, attempts, scanned): (i32, i32, Option<i64>) = (r.get(0), r.get(1), r.get(2));
    assert!(retries >= 3 && attempts >= 4, "reported: {retries} retries, {attempts} attempts");
    assert!(scanned.unwrap() < 1000, "the batch that kept failing was split ({scanned:?} rows)");
    assert_clean(&mut c);
}

#[test]
fn concurrent_writers_through_the_trigger() {
    let db = "migrate_writers";
    let mut c = fresh_db(db);
    make_table(&mut c, 100_000);
    c.batch_execute("ALTER DATABASE migrate_writers SET stage_norm.mode = enforce").unwrap();
    let stop = Arc::new(Mutex::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, errors) = (stop.clone(), errors.clone());
            thread::spawn(move || {
                let mut c = Client::connect(&dsn_for("migrate_writers"), NoTls).unwrap();
                let mut i: i64 = 0;
                while !*stop.lock().unwrap() {
                    i += 1;
                    let id = (i * 7919 + w * 104_729) % 100_000 + 1;
                    let res = if i % 3 == 0 {
                        c.execute("INSERT INTO t VALUES ($1, 'Series B')", &[&(200_000 + i * 2 + w)]).map(|_| ())
                    } else {
                        c.execute("UPDATE t SET stage = 'seriesB' WHERE id = $1", &[&id]).map(|_| ())
                    };
                    if let Err(e) = res {
                        errors.lock().unwrap().push(e.to_string());
                    }
                }
                i
            })
        })
        .collect();
    let mut m = connect(db);
    m.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 2000)").unwrap();
    *stop.lock().unwrap() = true;
    let writes: i64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(writes > 100, "writers ran during the migration ({writes} statements)");
    assert!(errors.lock().unwrap().is_empty(), "no deadlock, no error: {:?}", errors.lock().unwrap());
    // What the writers wrote passed through the trigger (enforce rewrites known variants).
    let written: i64 = m.query_one("SELECT count(*) FROM t WHERE id > 200000", &[]).unwrap().get(0);
    assert!(written > 0);
    assert_clean(&mut m);
    let v: i64 = m
        .query_one("SELECT (stage_norm.verify('t', 'stage')->>'non_canonical')::bigint", &[])
        .unwrap()
        .get(0);
    let unknown: i64 = m.query_one("SELECT count(*) FROM t WHERE stage = 'growth'", &[]).unwrap().get(0);
    assert_eq!(v, unknown, "verify: only the unknown label remains");
    // The run's verdicts judge its own rows (#28): the writers inserted rows meanwhile, so the
    // table's counts changed, and the verdicts still hold (they read false before).
    let r = m
        .query_one(
            "SELECT (l->>'rows_before')::bigint, (l->>'rows_after')::bigint, (l->>'row_count_unchanged')::boolean, (l->>'no_null_introduced')::boolean
               FROM (SELECT stage_norm.verify('t', 'stage')->'last_run' AS l) x",
            &[],
        )
        .unwrap();
    let (before, after, same, no_null): (i64, i64, Option<bool>, Option<bool>) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert!(after > before, "the writers inserted rows during the run ({before} -> {after})");
    assert_eq!((same, no_null), (Some(true), Some(true)));
}

#[test]
fn one_run_at_a_time_and_cancel_releases_the_lock() {
    let db = "migrate_twice";
    let mut c = fresh_db(db);
    make_table(&mut c, 20_000);
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut cfg: postgres::Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut first = cfg.connect(NoTls).unwrap();
    let pid: i32 = first.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let h = thread::spawn(move || {
        let r = first.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 1000, pause_ms => 200)");
        (r, first)
    });
    wait_for(&mut c, "SELECT coalesce((SELECT batches >= 2 FROM stage_norm.migration_runs WHERE table_name = 't'), false)", 30);
    let e = c.batch_execute("CALL stage_norm.migrate('t', 'stage')").unwrap_err();
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "55006");
    assert!(db_err.detail().unwrap().contains(&format!("in backend {pid}")), "{:?}", db_err.detail());
    // A cancel (between batches or in one) stops the run, marks it and releases the lock.
    assert!(c.query_one("SELECT pg_cancel_backend($1)", &[&pid]).unwrap().get::<_, bool>(0));
    let (r, mut first) = h.join().unwrap();
    assert_eq!(r.unwrap_err().code().unwrap().code(), "57014");
    let (_, status, ..) = run_row(&mut c);
    assert_eq!(status, "failed");
    // The first session is still connected, and yet another one may resume at once.
    first.batch_execute("SELECT 1").unwrap();
    c.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 1000)").unwrap();
    let (_, status, batches, ..) = run_row(&mut c);
    // 20 batches of 1000, and an empty one when the 20th ends exactly at the last key
    assert_eq!(status, "finished");
    assert!((20..=21).contains(&batches), "{batches}");
    assert_clean(&mut c);
    // One NOTICE per batch, with its figures, percent done and an ETA.
    let n = notices.lock().unwrap();
    let per_batch: Vec<_> = n.iter().filter(|m| m.contains(" batch ") && m.contains("% done, ETA")).collect();
    assert!(per_batch.len() >= 2, "{n:?}");
    assert!(per_batch[0].contains("1000 rows scanned"), "{}", per_batch[0]);
}

#[test]
fn statement_timeout_stops_a_run_that_resumes() {
    let db = "migrate_timeout";
    let mut c = fresh_db(db);
    make_table(&mut c, 20_000);
    let before = checksum(&mut c);
    let todo = expected_updates(&mut c);
    c.batch_execute("SET statement_timeout = '700ms'").unwrap();
    let e = c.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 1000, pause_ms => 100)").unwrap_err();
    assert_eq!(e.code().unwrap().code(), "57014");
    c.batch_execute("RESET statement_timeout").unwrap();
    let (_, status, batches, ..) = run_row(&mut c);
    assert_eq!(status, "failed");
    assert!(batches >= 1 && batches < 20, "{batches}");
    resume_and_check(db, &before, todo);
}

/// The batch statements' plans (#28): with undo, each batch rewrote its rows by
/// `UPDATE ... WHERE ctid = ANY($1)`, which the planner ran as a sequential scan of the whole
/// table once it had thousands of TIDs in hand, so a run cost O(rows^2). auto_explain sends the
/// plan of every statement migrate runs to this client (log_level = notice): no batch statement
/// scans the table sequentially, and the rewrite is a TID scan.
#[test]
fn batch_plans_never_scan_the_table() {
    let db = "sn_mig_plans";
    let mut admin = fresh_db(db);
    make_table(&mut admin, 30_000);
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut cfg: postgres::Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut c = cfg.connect(NoTls).unwrap();
    c.batch_execute(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
         SET auto_explain.log_level = notice; SET auto_explain.log_format = text;",
    )
    .unwrap();
    for keep_undo in [true, false] {
        notices.lock().unwrap().clear();
        admin.batch_execute("SET stage_norm.mode = off; UPDATE t SET stage = 'Series A ' WHERE id % 8 = 1; RESET stage_norm.mode; ANALYZE t").unwrap();
        c.batch_execute(&format!("CALL stage_norm.migrate('t', 'stage', batch_size => 5000, keep_undo => {keep_undo})")).unwrap();
        // The batch statements: the range's scan (its columns are named _sn_*) and the rewrite.
        // (The run's opening and closing counts read the table once per run, not per batch.)
        let plans: Vec<String> = notices
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("Query Text:") && (m.contains("_sn_key") || m.contains("Update on t")))
            .cloned()
            .collect();
        let updates: Vec<&String> = plans.iter().filter(|p| p.contains("Update on t")).collect();
        assert!(updates.len() >= 6, "keep_undo {keep_undo}: {} UPDATE plans of 30,000 rows in batches of 5,000", updates.len());
        for p in &plans {
            assert!(!p.contains("Seq Scan on t "), "keep_undo {keep_undo}: a batch statement scans the table:\n{p}");
        }
        if keep_undo {
            assert!(updates.iter().all(|p| p.contains("Tid Scan on t")), "{updates:?}");
        }
    }
    assert_clean(&mut admin);
}
