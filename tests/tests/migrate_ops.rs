//! stage_norm.migrate in operation: bounded windows scheduled by pg_cron (max_batches), and a
//! real streaming standby whose replay is paused (max_replica_lag). Needs the throwaway cluster
//! of scripts/with-cluster.sh, which preloads pg_cron (cron.database_name = 'postgres', jobs run
//! as libpq clients over 127.0.0.1) and allows replication connections (trust).
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use stage_norm_client_tests::{connect, dsn_for, free_port, fresh_db, is_root, pg_program};

const LABELS: [&str; 8] = ["Series A ", "pre_seed", "seriesB", "Seed Round", "SERIES C+", "growth", "series-a", "Pre Seed"];

/// Table `tbl`: `n` rows as in migrate.rs (7 labels in 8 to rewrite, "growth" unknown, one row
/// in 50 NULL), governed by the trigger.
fn make_table(c: &mut Client, tbl: &str, n: i64) {
    let labels = LABELS.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(",");
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {tbl}; CREATE TABLE {tbl} (id bigint PRIMARY KEY, stage text);
         INSERT INTO {tbl} SELECT i, CASE WHEN i % 50 = 0 THEN NULL ELSE (ARRAY[{labels}])[1 + i % 8] END FROM generate_series(1, {n}) i;
         SELECT stage_norm.attach('{tbl}', 'stage'); ANALYZE {tbl};"
    ))
    .unwrap();
}

fn expected_updates(c: &mut Client, tbl: &str) -> i64 {
    c.query_one(
        &format!(
            "SELECT count(*) FROM {tbl} WHERE stage_norm.normalize_stage(stage) IS NOT NULL AND stage IS DISTINCT FROM stage_norm.normalize_stage(stage)"
        ),
        &[],
    )
    .unwrap()
    .get(0)
}

/// Every value canonical, NULL, or unknown (left as it was).
fn assert_clean(c: &mut Client, tbl: &str) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE NOT stage_norm.is_canonical_stage(stage)),
                        count(*) FILTER (WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL)
                   FROM {tbl}"
            ),
            &[],
        )
        .unwrap();
    let (bad, unknown): (i64, i64) = (r.get(0), r.get(1));
    assert_eq!(bad, unknown, "every non-canonical value left in {tbl} must be an unknown one");
    assert!(unknown > 0, "the unknown label stays as it was");
}

/// (run_id, status, batches, rows_updated, rows_before, rows_after) of the newest run on `tbl`.
fn run_row(c: &mut Client, tbl: &str) -> Option<(i64, String, i32, i64, i64, i64)> {
    c.query_opt(
        "SELECT run_id, status, batches, rows_updated, coalesce(rows_before, -1), coalesce(rows_after, -1)
           FROM stage_norm.migration_runs WHERE table_name = $1 ORDER BY run_id DESC LIMIT 1",
        &[&tbl],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
}

// ---------------------------------------------------------------------------------------------
// 1. Windows with pg_cron
// ---------------------------------------------------------------------------------------------

/// Unschedules the job, forgets its run details and drops the test database, whatever the
/// test's outcome.
struct CronCleanup {
    job: String,
    db: &'static str,
}

impl Drop for CronCleanup {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&dsn_for("postgres"), NoTls) {
            let _ = c.execute(
                "DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron.job WHERE jobname = $1)",
                &[&self.job],
            );
            let _ = c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[&self.job]);
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
        }
    }
}

/// A bounded `migrate` (max_batches) scheduled by pg_cron finishes the run across windows: each
/// window runs its batches and leaves the run `paused`; the last one finishes it. 25,000 rows in
/// batches of 5,000 are 6 batches (the 6th reaches the end), 2 per window: exactly 3 windows.
///
/// pg_cron 1.4.2 (Debian 12) schedules by the minute only ('N seconds' came in 1.5), so this
/// takes 2 to 3 minutes; with pg_cron >= 1.5 the test schedules every 5 seconds instead.
#[test]
fn pg_cron_runs_bounded_windows_to_the_end() {
    if !stage_norm_client_tests::has_debian_extras("pg_cron") {
        return;
    }
    let (db, tbl) = ("migrate_cron", "sn_cron_windows");
    let job = format!("stage_norm_migrate_windows_{}", std::process::id());
    let mut admin = connect("postgres");
    let preload: String = admin.query_one("SHOW shared_preload_libraries", &[]).unwrap().get(0);
    assert!(
        preload.split(',').any(|l| l.trim() == "pg_cron"),
        "pg_cron is not preloaded ({preload:?}): run through scripts/with-cluster.sh, with postgresql-15-cron installed (scripts/bootstrap.sh)"
    );
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    let _cleanup = CronCleanup { job: job.clone(), db };

    let mut c = fresh_db(db);
    make_table(&mut c, tbl, 25_000);
    let todo = expected_updates(&mut c, tbl);

    // The job runs in the test database (cron.schedule_in_database: pg_cron's own tables stay in
    // postgres, stage_norm is installed only where the table is).
    let call = format!("CALL stage_norm.migrate('{tbl}', 'stage', batch_size => 5000, max_batches => 2)");
    let t0 = Instant::now();
    let (jobid, schedule): (i64, &str) =
        match admin.query_one("SELECT cron.schedule_in_database($1, '5 seconds', $2, $3)", &[&job, &call, &db]) {
            Ok(r) => (r.get(0), "5 seconds"),
            Err(e) => {
                let msg = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
                assert!(msg.contains("invalid schedule"), "cron.schedule_in_database: {e}");
                let r = admin
                    .query_one("SELECT cron.schedule_in_database($1, '* * * * *', $2, $3)", &[&job, &call, &db])
                    .unwrap();
                (r.get(0), "* * * * *")
            }
        };
    let version: String =
        admin.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'", &[]).unwrap().get(0);
    println!("pg_cron {version}: job {jobid} '{schedule}': {call}");
    let timeout = if schedule == "5 seconds" { Duration::from_secs(60) } else { Duration::from_secs(260) };

    // Poll the run: record every change of (status, batches), until it is finished.
    let mut seen: Vec<(String, i32)> = Vec::new();
    loop {
        if let Some((_, status, batches, ..)) = run_row(&mut c, tbl) {
            if seen.last() != Some(&(status.clone(), batches)) {
                println!("  {:>6.1} s: run {status}, {batches} batches", t0.elapsed().as_secs_f64());
                seen.push((status.clone(), batches));
            }
            if status == "finished" {
                break;
            }
            assert!(status != "failed", "a window failed: {seen:?}");
        }
        assert!(t0.elapsed() < timeout, "not finished after {:?}: {seen:?}", t0.elapsed());
        thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed();
    // Unschedule at once: a further window would start a new run (see docs/migration.md).
    admin.execute("SELECT cron.unschedule($1::bigint)", &[&jobid]).unwrap();
    println!("finished after {:.1} s", took.as_secs_f64());

    // The windows as pg_cron recorded them (the third is marked succeeded just after the run's
    // last COMMIT).
    let deadline = Instant::now() + Duration::from_secs(10);
    let windows = loop {
        let rows = admin
            .query(
                "SELECT status, coalesce(return_message, ''), extract(epoch FROM start_time)::float8,
                        extract(epoch FROM end_time)::float8
                   FROM cron.job_run_details WHERE jobid = $1 ORDER BY runid",
                &[&jobid],
            )
            .unwrap();
        let w: Vec<(String, String, f64, Option<f64>)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        if w.iter().filter(|x| x.0 == "succeeded").count() >= 3 || Instant::now() > deadline {
            break w;
        }
        thread::sleep(Duration::from_millis(50));
    };
    for w in &windows {
        println!("  window: {} {:?}", w.0, w.1);
    }
    assert!(windows.iter().all(|w| w.0 == "succeeded"), "every window succeeded: {windows:?}");
    assert_eq!(windows.len(), 3, "exactly three windows: {windows:?}");

    // Paused after each window but the last, finished by the last.
    let moves: Vec<(String, i32)> = seen.into_iter().filter(|(s, _)| s != "running").collect();
    let expect: Vec<(String, i32)> = vec![("paused".into(), 2), ("paused".into(), 4), ("finished".into(), 6)];
    assert_eq!(moves, expect, "the run's states between windows");

    // Each window ran its own two batches.
    let stamps: Vec<f64> = c
        .query(
            "SELECT extract(epoch FROM b.finished_at)::float8 FROM stage_norm.migration_batches b
               JOIN stage_norm.migration_runs r USING (run_id) WHERE r.table_name = $1 AND b.status = 'done' ORDER BY b.batch",
            &[&tbl],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let per_window: Vec<usize> = windows
        .iter()
        .map(|(_, _, start, end)| stamps.iter().filter(|&&t| t >= *start && t <= end.unwrap_or(f64::MAX)).count())
        .collect();
    assert_eq!(per_window, vec![2, 2, 2], "batches per window");

    // One run, all of the table, nothing lost.
    let runs: i64 = c
        .query_one("SELECT count(*) FROM stage_norm.migration_runs WHERE table_name = $1", &[&tbl])
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "the windows resumed one run");
    let (_, _, batches, updated, rows_before, rows_after) = run_row(&mut c, tbl).unwrap();
    assert_eq!((batches, updated), (6, todo));
    assert_eq!((rows_before, rows_after), (25_000, 25_000), "row count unchanged");
    let n: i64 = c.query_one(&format!("SELECT count(*) FROM {tbl}"), &[]).unwrap().get(0);
    assert_eq!(n, 25_000);
    assert_clean(&mut c, tbl);
    c.batch_execute(&format!("DROP TABLE {tbl}")).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Replica lag with a real standby
// ---------------------------------------------------------------------------------------------

/// A streaming standby of the test cluster on loopback: pg_basebackup -R into a temporary
/// directory, its own port and socket directory. Stopped (immediate) and removed on drop.
struct Standby {
    dir: PathBuf,
    port: u16,
    name: String,
}

impl Standby {
    fn start() -> Standby {
        let primary_port: u16 = std::env::var("PGPORT").expect("PGPORT (scripts/with-cluster.sh)").parse().unwrap();
        let dir = std::env::temp_dir().join(format!("stage_norm_standby_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            assert!(Command::new("chown").arg("postgres:").arg(&dir).status().unwrap().success());
        }
        let name = format!("stage_norm_standby_{}", std::process::id());
        let s = Standby { dir, port: free_port(), name };
        let data = s.data();
        let t0 = Instant::now();
        let st = pg_program("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string(), "-U", "postgres"])
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "-D"])
            .arg(&data)
            .status()
            .unwrap();
        assert!(st.success(), "pg_basebackup");
        println!("pg_basebackup: {:.1} s", t0.elapsed().as_secs_f64());
        // The primary's postgresql.conf came along: the later lines win.
        append(
            &data.join("postgresql.conf"),
            &format!(
                "\n# standby (tests/tests/migrate_ops.rs)\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nhot_standby = on\n",
                s.port,
                s.dir.display()
            ),
        );
        // -R wrote primary_conninfo into postgresql.auto.conf; name the standby for pg_stat_replication.
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres application_name={}'\n",
                s.name
            ),
        );
        let st = pg_program("pg_ctl").arg("-D").arg(&data).arg("-l").arg(s.dir.join("log")).args(["-s", "-w", "start"]).status().unwrap();
        if !st.success() {
            panic!("standby start failed: {}", std::fs::read_to_string(s.dir.join("log")).unwrap_or_default());
        }
        let mut p = connect("postgres");
        let t0 = Instant::now();
        while p
            .query_opt("SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", &[&s.name])
            .unwrap()
            .is_none()
        {
            assert!(t0.elapsed() < Duration::from_secs(60), "the standby is not streaming");
            thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn connect(&self, db: &str) -> Client {
        Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port), NoTls)
            .unwrap_or_else(|e| panic!("connect to the standby's {db}: {e}"))
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = pg_program("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The standby's lags as the primary reports them, in seconds (NULL: None).
fn lags(p: &mut Client, name: &str) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let r = p
        .query_one(
            "SELECT extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
                    extract(epoch FROM replay_lag)::float8, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8
               FROM pg_stat_replication WHERE application_name = $1",
            &[&name],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// With the standby's replay paused while the primary keeps writing, pg_stat_replication's
/// replay_lag grows (walsender interpolates between its LSN/time samples: a stuck replay
/// position shows an increasing lag as long as the standby sends replies, i.e. while WAL
/// arrives, and every wal_receiver_status_interval otherwise). So `migrate(max_replica_lag =>
/// '1 second')` waits before its first batch, with a NOTICE, and finishes once replay resumes.
/// On the standby, stage_norm's functions work read-only.
#[test]
fn replica_lag_waits_for_a_paused_standby() {
    let (db, tbl) = ("migrate_lag", "t");
    let mut c = fresh_db(db);
    make_table(&mut c, tbl, 10_000);
    let todo = expected_updates(&mut c, tbl);
    c.batch_execute("CREATE TABLE lag_noise (id bigserial PRIMARY KEY, pad text)").unwrap();
    let t_all = Instant::now();
    let standby = Standby::start();
    println!("standby streaming after {:.1} s", t_all.elapsed().as_secs_f64());

    // Read-only on the standby: the functions, and verify().
    let mut s = standby.connect(db);
    let primary_lsn: String = c.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    let t0 = Instant::now();
    while !s
        .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&primary_lsn])
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "the standby does not replay");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(s.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    let n: Option<String> = s.query_one("SELECT stage_norm.normalize_stage('Series A ')", &[]).unwrap().get(0);
    assert_eq!(n.as_deref(), Some("series-a"));
    let v: i64 = s
        .query_one("SELECT (stage_norm.verify('t', 'stage')->>'rows')::bigint", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 10_000);

    // Pause replay; a writer on the primary keeps WAL flowing.
    s.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    let t0 = Instant::now();
    while s.query_one("SELECT pg_get_wal_replay_pause_state()", &[]).unwrap().get::<_, String>(0) != "paused" {
        assert!(t0.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut w = connect("migrate_lag");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                w.batch_execute("INSERT INTO lag_noise (pad) SELECT repeat('x', 100) FROM generate_series(1, 200)").unwrap();
                n += 1;
                thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };

    // What pg_stat_replication shows meanwhile.
    let mut p = connect("postgres");
    println!("replay paused, primary writing:  write_lag  flush_lag  replay_lag  (replay behind by)");
    let mut samples = Vec::new();
    for i in 0..7 {
        let (w, f, r, bytes) = lags(&mut p, &standby.name);
        let show = |x: Option<f64>| x.map_or("NULL".to_string(), |s| format!("{s:.3}s"));
        println!("  {:>4.1} s: {:>9}  {:>9}  {:>10}  ({:.0} kB)", i as f64 * 0.5, show(w), show(f), show(r), bytes.unwrap_or(0.0) / 1024.0);
        samples.push((w, f, r));
        thread::sleep(Duration::from_millis(500));
    }
    let (w_last, f_last, r_last) = *samples.last().unwrap();
    let r_first = samples.iter().find_map(|x| x.2).expect("replay_lag is reported");
    let r_last = r_last.expect("replay_lag is reported");
    assert!(r_last > 2.0 && r_last > r_first + 1.5, "replay_lag grows while replay is paused: {samples:?}");
    assert!(w_last.unwrap_or(0.0) < 1.0 && f_last.unwrap_or(0.0) < 1.0, "the standby still receives: {samples:?}");

    // migrate waits for the standby before its first batch.
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut cfg: postgres::Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let mut m = cfg.connect(NoTls).unwrap();
    let pid: i32 = m.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let t_call = Instant::now();
    let h = thread::spawn(move || {
        m.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 1000, max_replica_lag => '1 second')")
    });
    let waiting = |n: &Vec<String>| n.iter().any(|m| m.contains("a standby lags") && m.contains("waiting"));
    while !waiting(&notices.lock().unwrap()) {
        assert!(t_call.elapsed() < Duration::from_secs(20), "no 'a standby lags' NOTICE: {:?}", notices.lock().unwrap());
        assert!(!h.is_finished(), "migrate ended without waiting: {:?}", notices.lock().unwrap());
        thread::sleep(Duration::from_millis(20));
    }
    // It sleeps in its wait loop (pg_sleep), and commits no batch meanwhile.
    let t0 = Instant::now();
    while c
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", &[&pid])
        .unwrap()
        .is_none()
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "migrate is not sleeping");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_secs(2));
    let (_, status, batches, ..) = run_row(&mut c, tbl).unwrap();
    assert_eq!((status.as_str(), batches), ("running", 0), "no batch while the standby lags");
    assert!(!h.is_finished());
    {
        let n = notices.lock().unwrap();
        let w: Vec<_> = n.iter().filter(|m| m.contains("a standby lags")).collect();
        println!("{} wait NOTICEs in {:.1} s, first: {}", w.len(), t_call.elapsed().as_secs_f64(), w[0]);
    }

    // Replay resumes: the lag falls and the run goes on to the end.
    s.batch_execute("SELECT pg_wal_replay_resume()").unwrap();
    let t_resume = Instant::now();
    let t0 = Instant::now();
    while !h.is_finished() {
        assert!(t0.elapsed() < Duration::from_secs(60), "migrate did not finish after replay resumed");
        thread::sleep(Duration::from_millis(20));
    }
    h.join().unwrap().unwrap();
    println!("finished {:.1} s after replay resumed", t_resume.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 20, "{writes}");
    let (_, status, batches, updated, rows_before, rows_after) = run_row(&mut c, tbl).unwrap();
    assert_eq!(status, "finished");
    assert!((10..=11).contains(&batches), "{batches}");
    assert_eq!(updated, todo);
    assert_eq!((rows_before, rows_after), (10_000, 10_000));
    assert_clean(&mut c, tbl);

    // The standby replays the migrated table. Up to the WAL *inserted*: migrate's batches commit
    // with synchronous_commit = off, so the last one's commit record may not be written yet, and
    // pg_current_wal_lsn() (the write position) would let the check run before it is replayed.
    let primary_lsn: String = c.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    let t0 = Instant::now();
    while !s
        .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&primary_lsn])
        .unwrap()
        .get::<_, bool>(0)
    {
        // (the last record may wait for more WAL to be flushed: the bgwriter logs a snapshot at
        // least every 15 s)
        assert!(t0.elapsed() < Duration::from_secs(60), "the standby does not catch up");
        thread::sleep(Duration::from_millis(20));
    }
    assert_clean(&mut s, tbl);
    drop(s);
    drop(standby);
    println!("replica test: {:.1} s in all", t_all.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 3. Every view and the write functions on a standby
// ---------------------------------------------------------------------------------------------

/// What a view returns, rows as text (`SELECT v::text ... ORDER BY 1`), minus the columns that
/// legitimately differ between servers (`except`).
fn view_rows(c: &mut Client, view: &str, except: &[&str]) -> Vec<String> {
    let drop = except.iter().map(|e| format!(" - '{e}'")).collect::<String>();
    c.query(&format!("SELECT (to_jsonb(v){drop})::text FROM stage_norm.{view} v ORDER BY 1"), &[])
        .unwrap_or_else(|e| panic!("SELECT FROM stage_norm.{view}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The SQLSTATE and message of `sql` on `c` (None: it succeeded).
fn sqlstate(c: &mut Client, sql: &str) -> Option<(String, String)> {
    match c.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => Some(match e.as_db_error() {
            Some(d) => (d.code().code().to_owned(), d.message().to_owned()),
            None => ("none".to_owned(), e.to_string()),
        }),
    }
}

/// On a streaming standby, every view of schema stage_norm (enumerated from pg_class, so a new
/// view fails this test until its standby behaviour is stated here and in docs/operations.md)
/// can be selected and returns what docs/operations.md says: the primary's catalog and tables
/// (overrides, stages, aliases, migration runs) as replicated; the cluster-wide statistics
/// from the standby's own shared memory (empty: no trigger fires there; not the primary's
/// figures, not an error), so also no tripped breaker in table_modes while the primary's is
/// tripped. Every write function fails with 25006 (read_only_sql_transaction); reset_stats and
/// reset_breaker act on the standby's own memory only.
#[test]
fn standby_views_and_write_functions() {
    let db = "sn_standby_views";
    let mut c = fresh_db(db);
    make_table(&mut c, "t", 2_000);
    c.batch_execute(
        "CREATE TABLE off_t (id bigint PRIMARY KEY, stage text);
         SELECT stage_norm.attach('off_t', 'stage');
         CREATE TABLE tn (id bigint PRIMARY KEY, fund text, stage text);
         INSERT INTO tn SELECT i, 'fund' || (i % 3), CASE WHEN i % 2 = 0 THEN 'Series A ' ELSE 'seed' END FROM generate_series(1, 300) i;
         CREATE TABLE brk (id bigint PRIMARY KEY, stage text);
         SELECT stage_norm.attach('brk', 'stage');
         SELECT stage_norm.add_alias('Angel', 'pre-seed');
         SELECT stage_norm.set_table_mode('t', 'enforce');
         SELECT stage_norm.set_table_mode('off_t', 'off');
         SELECT stage_norm.set_table_mode('brk', 'enforce');
         INSERT INTO t VALUES (100001, 'Series B'), (100002, 'Angel');
         INSERT INTO off_t VALUES (1, 'Series B ');",
    )
    .unwrap();
    // Trip brk's breaker on the primary: one rejection in one judged value, over a ratio of 0.5.
    c.batch_execute("SET stage_norm.breaker_reject_ratio = 0.5; SET stage_norm.breaker_min_rows = 1").unwrap();
    let e = c.batch_execute("INSERT INTO brk VALUES (1, 'Mezzanine')").unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::CHECK_VIOLATION), "{e}");
    c.batch_execute("RESET stage_norm.breaker_reject_ratio; RESET stage_norm.breaker_min_rows").unwrap();
    // A paused run (one window of one batch) and a tenant run, for the migration views.
    c.batch_execute("CALL stage_norm.migrate('t', 'stage', batch_size => 500, max_batches => 1)").unwrap();
    c.batch_execute("CALL stage_norm.migrate('tn', 'stage', batch_size => 60, tenant => 'fund', max_batches => 2)").unwrap();
    let tripped: bool = c
        .query_one("SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = 'brk'::regclass", &[])
        .unwrap()
        .get(0);
    assert!(tripped, "the primary's breaker on brk is tripped");

    let standby = Standby::start();
    let mut s = standby.connect(db);
    let primary_lsn: String = c.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    let t0 = Instant::now();
    while !s.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&primary_lsn]).unwrap().get::<_, bool>(0) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the standby does not replay");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(s.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));

    // Every view of the schema, from the catalog.
    let views: Vec<String> = s
        .query(
            "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'stage_norm'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("views: {views:?}");
    let stats_views = ["breakers", "latency", "latency_buckets", "stats"];
    let replicated = ["migration_progress", "migration_tenant_progress", "stages"];
    let mut known: Vec<&str> = [&stats_views[..], &replicated[..], &["session_counters", "stats_info", "table_modes"]].concat();
    known.sort();
    assert_eq!(views, known, "a view without a stated standby behaviour: add it to this test and docs/operations.md");
    for v in &views {
        let n: i64 = s.query_one(&format!("SELECT count(*) FROM stage_norm.{v}"), &[]).unwrap_or_else(|e| panic!("{v}: {e}")).get(0);
        let np: i64 = c.query_one(&format!("SELECT count(*) FROM stage_norm.{v}"), &[]).unwrap().get(0);
        println!("  {v:<26} standby {n:>4} rows, primary {np:>4}");
    }

    // Replicated: the same rows as on the primary.
    for v in replicated {
        let (p, st) = (view_rows(&mut c, v, &[]), view_rows(&mut s, v, &[]));
        assert!(!p.is_empty(), "{v} has rows on the primary");
        assert_eq!(st, p, "{v} on the standby");
    }
    // table_modes: the primary's triggers and overrides; effective_mode is this session's; the
    // breaker columns are the standby's own memory: brk is not shown tripped there.
    let (p, st) = (
        view_rows(&mut c, "table_modes", &["breaker_tripped", "breaker_tripped_at", "breaker_trip_ratio"]),
        view_rows(&mut s, "table_modes", &["breaker_tripped", "breaker_tripped_at", "breaker_trip_ratio"]),
    );
    assert_eq!(st, p, "table_modes on the standby, but for the breaker");
    let modes: Vec<(String, Option<String>, String, bool)> = s
        .query("SELECT table_name::text, override_mode, effective_mode, breaker_tripped FROM stage_norm.table_modes ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    println!("  table_modes on the standby: {modes:?}");
    assert!(modes.contains(&("t".into(), Some("enforce".into()), "enforce".into(), false)), "{modes:?}");
    assert!(modes.contains(&("off_t".into(), Some("off".into()), "off".into(), false)), "{modes:?}");
    assert!(modes.contains(&("brk".into(), Some("enforce".into()), "enforce".into(), false)), "the standby knows no tripped breaker: {modes:?}");
    s.batch_execute("SET stage_norm.max_mode = 'warn'").unwrap();
    let eff: String = s.query_one("SELECT effective_mode FROM stage_norm.table_modes WHERE table_name = 't'::regclass", &[]).unwrap().get(0);
    assert_eq!(eff, "warn", "effective_mode follows the standby session's settings");
    s.batch_execute("RESET stage_norm.max_mode").unwrap();

    // The statistics: the standby's own shared memory, empty; the primary's counted.
    for v in stats_views {
        let n: i64 = s.query_one(&format!("SELECT count(*) FROM stage_norm.{v}"), &[]).unwrap().get(0);
        assert_eq!(n, 0, "{v} on the standby");
        let np: i64 = c.query_one(&format!("SELECT count(*) FROM stage_norm.{v} WHERE datname = $1"), &[&db]).unwrap().get(0);
        assert!(np > 0, "{v} on the primary");
    }
    let info: (i64, i64, i64, i64, i64) = {
        let r = s.query_one("SELECT columns_used::int8, columns_max::int8, tables_used::int8, tables_max::int8, dropped::int8 FROM stage_norm.stats_info", &[]).unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    };
    let pmax: i64 = c.query_one("SELECT columns_max::int8 FROM stage_norm.stats_info", &[]).unwrap().get(0);
    let reset: String = s.query_one("SELECT stats_reset::text FROM stage_norm.stats_info", &[]).unwrap().get(0);
    println!("  stats_info on the standby: {info:?}, stats_reset {reset}");
    assert_eq!(info, (0, pmax, 0, pmax, 0), "stats_info on the standby: nothing used");
    let n: i64 = s.query_one("SELECT count(*) FROM stage_norm.session_counters", &[]).unwrap().get(0);
    assert_eq!(n, 0, "session_counters: no trigger fired in this session");

    // Writes: 25006, the statement refused before anything ran, for each write function.
    let writes = [
        "SELECT stage_norm.set_table_mode('t', 'warn')",
        "SELECT stage_norm.set_table_mode('t', NULL)",
        "SELECT stage_norm.add_alias('Mezzanine', 'series-c+')",
        "SELECT stage_norm.remove_alias('Angel')",
        "SELECT stage_norm.attach('tn', 'stage')",
        "SELECT stage_norm.detach('t')",
        "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'growth')",
        "SELECT stage_norm.reset_stages()",
        "SELECT stage_norm.rename_stage('seed', 'seed-round')",
        "CALL stage_norm.migrate('t', 'stage')",
        "CALL stage_norm.migrate('tn', 'stage', tenant => 'fund')",
        "CALL stage_norm.add_check('t', 'stage')",
        "CALL stage_norm.add_check('t', 'stage', validate => false)",
        "SELECT stage_norm.purge_migration_undo(older_than => '0 s')",
        "INSERT INTO t VALUES (200001, 'Series A')",
        "UPDATE off_t SET stage = 'Seed'",
    ];
    let run_id: i64 = c.query_one("SELECT max(run_id) FROM stage_norm.migration_runs WHERE table_name::text = 't'", &[]).unwrap().get(0);
    let rollback = format!("CALL stage_norm.rollback_migration({run_id})");
    let mut seen = Vec::new();
    for w in writes.iter().copied().chain([rollback.as_str()]) {
        let code = sqlstate(&mut s, w);
        println!("  {w}: {code:?}");
        seen.push((w.to_owned(), code));
    }
    let wrong: Vec<_> = seen.iter().filter(|(_, e)| e.as_ref().map(|e| e.0.as_str()) != Some("25006")).collect();
    assert!(wrong.is_empty(), "not 25006 on the standby: {wrong:?}");
    // Nothing of that reached the session's counters.
    let n: i64 = s.query_one("SELECT count(*) FROM stage_norm.session_counters", &[]).unwrap().get(0);
    assert_eq!(n, 0);

    // reset_stats / reset_breaker: allowed, on the standby's own memory only.
    s.batch_execute("SELECT stage_norm.reset_stats()").unwrap();
    let was: bool = s.query_one("SELECT stage_norm.reset_breaker('brk')", &[]).unwrap().get(0);
    assert!(!was, "the standby's breaker of brk was never tripped");
    let (np, tripped): (i64, bool) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM stage_norm.stats WHERE datname = $1),
                        (SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = 'brk'::regclass)",
                &[&db],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(np > 0 && tripped, "the primary's statistics and breaker are untouched");

    // Still a working standby afterwards: the functions read-only.
    let n: Option<String> = s.query_one("SELECT stage_norm.normalize_stage('angel')", &[]).unwrap().get(0);
    assert_eq!(n.as_deref(), Some("pre-seed"));
    let eff: String = s.query_one("SELECT stage_norm.effective_mode('off_t')", &[]).unwrap().get(0);
    assert_eq!(eff, "off");
    let r = s
        .query_one(
            "SELECT stage_norm.normalize_stage_builtin('Series A ') || ' ' || stage_norm.is_canonical_stage('seed')
                    || ' ' || stage_norm.normalize_stage_distribution('{\"Angel\": 0.5, \"seed\": 0.5}')::text
                    || ' ' || stage_norm.normalize_stages(ARRAY['Series B', 'Angel'])::text || ' ' || stage_norm.stage_rank('series-b')
                    || ' ' || stage_norm.stage_key('Series A ') || ' ' || (SELECT string_agg(x, ',') FROM stage_norm.canonical_stages() x)
                    || ' ' || stage_norm.may_set_table_mode('t') || ' ' || (stage_norm.assert_verified('brk', 'stage') IS NOT NULL)",
            &[],
        )
        .unwrap();
    let all: String = r.get(0);
    println!("  read-only functions on the standby: {all}");
    assert_eq!(
        all,
        "series-a true {\"seed\": 0.5, \"pre-seed\": 0.5} {series-b,pre-seed} 4 seriesa pre-seed,seed,series-a,series-b,series-c+ true true"
    );
    drop(s);
    drop(standby);
    drop(c);
    connect("postgres").batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}
