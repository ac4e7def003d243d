//! Cluster-wide statistics and the circuit breaker (stage_norm in shared_preload_libraries, as
//! scripts/with-cluster.sh sets it): exact counts from concurrent sessions, rolled-back and
//! rejected statements, the breaker across sessions, privileges, persistence over a clean
//! restart and its absence after a crash, and a full table.
use std::thread;

use postgres::error::SqlState;
use postgres::Client;
use stage_norm_client_tests::{connect, fresh_db, pg_ctl, server_log};

/// count per outcome of db.t.col, as a sorted "outcome=n" list (zeros left out).
fn counts(c: &mut Client, db: &str, table: &str) -> Vec<String> {
    c.query(
        "SELECT outcome || '=' || count FROM stage_norm.stats WHERE datname = $1 AND table_name = $2 AND count > 0 ORDER BY outcome",
        &[&db, &table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn counts_are_exact_across_concurrent_sessions_and_kept_on_rollback() {
    let db = "stats_exact";
    let mut c = fresh_db(db);
    c.batch_execute(
        "CREATE TABLE t (id bigserial PRIMARY KEY, stage text, phase text);
         SELECT stage_norm.attach('t', 'stage', 'phase');",
    )
    .unwrap();
    // 4 sessions × 25 transactions × 8 rows: per row, stage one of 4 kinds, phase NULL.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut s = connect(db);
                for _ in 0..25 {
                    s.batch_execute(
                        "INSERT INTO t (stage) VALUES ('seed'), ('seed'), ('Series A'), ('Series A'), ('Series A'), ('bogus'), (NULL), ('pre_seed')",
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 100 statements × 8 rows: stage passed 200, normalized 400 (Series A ×3 + pre_seed),
    // warned 100, nulls 100; phase nulls 800.
    let stage = c
        .query(
            "SELECT column_name || ':' || outcome || '=' || count FROM stage_norm.stats
              WHERE datname = $1 AND table_name = 't' AND count > 0 ORDER BY 1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
    assert_eq!(stage, ["phase:nulls=800", "stage:normalized=400", "stage:nulls=100", "stage:passed=200", "stage:warned=100"]);
    // A rolled-back statement's counts are kept (they count what the trigger did).
    c.batch_execute("BEGIN; INSERT INTO t (stage) VALUES ('seed'); ROLLBACK;").unwrap();
    // So is a rejected one's, and in the same transaction's earlier statements.
    c.batch_execute("SET stage_norm.mode = 'enforce'").unwrap();
    c.batch_execute("BEGIN; INSERT INTO t (stage) VALUES ('seed')").unwrap();
    let e = c.batch_execute("INSERT INTO t (stage) VALUES ('Series B'), ('bogus')").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION));
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        counts(&mut c, db, "t").iter().filter(|s| !s.starts_with("nulls")).cloned().collect::<Vec<_>>(),
        ["normalized=401", "passed=202", "rejected=1", "warned=100"]
    );
    // UPDATE: unchanged values are counted as such; the mode of the last flush is shown.
    c.batch_execute("UPDATE t SET phase = 'seed' WHERE id <= 10").unwrap();
    let r = c
        .query_one(
            "SELECT count, mode FROM stage_norm.stats WHERE datname = $1 AND column_name = 'stage' AND outcome = 'unchanged'",
            &[&db],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, String>(1)), (10, "enforce".to_string()));
    // The latency histogram: one call in latency_sample_every (16) is timed.
    c.batch_execute("SET stage_norm.latency_sample_every = 1").unwrap();
    c.batch_execute("INSERT INTO t (stage) SELECT 'seed' FROM generate_series(1, 1000)").unwrap();
    let r = c
        .query_one(
            "SELECT sampled_calls, p50_us > 0 AND p50_us <= p99_us AND p99_us <= p999_us FROM stage_norm.latency WHERE datname = $1 AND table_name = 't'",
            &[&db],
        )
        .unwrap();
    assert!(r.get::<_, i64>(0) >= 1000, "every call of the last statement was timed");
    assert!(r.get::<_, bool>(1));
    let r = c
        .query_one(
            "SELECT max(count) = max(total) AND bool_and(le > 0), count(*) FROM stage_norm.latency_buckets WHERE datname = $1 AND table_name = 't' AND le = 'Infinity'",
            &[&db],
        )
        .unwrap();
    assert!(r.get::<_, bool>(0));
    assert_eq!(r.get::<_, i64>(1), 1);
}

/// Inserts one unknown value per statement on `c` until an error or a WARNING-only outcome.
fn insert_bogus(c: &mut Client, table: &str) -> Result<u64, postgres::Error> {
    c.execute(&format!("INSERT INTO {table} (stage) VALUES ('bogus')"), &[])
}

#[test]
fn breaker_trips_across_sessions_and_resets() {
    let db = "stats_breaker";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "CREATE TABLE a (id serial PRIMARY KEY, stage text); CREATE TABLE b (id serial PRIMARY KEY, stage text);
             SELECT stage_norm.attach('a', 'stage'); SELECT stage_norm.attach('b', 'stage');
             ALTER DATABASE stats_breaker SET stage_norm.mode = 'enforce';
             ALTER DATABASE stats_breaker SET stage_norm.breaker_reject_ratio = 0.2;
             ALTER DATABASE stats_breaker SET stage_norm.breaker_min_rows = 20;
             ALTER DATABASE stats_breaker SET stage_norm.breaker_window = 60;",
        )
        .unwrap();
    let mut s1 = connect(db);
    let mut s2 = connect(db);
    let mut watcher = connect(db);
    // 30 good rows, then rejections from two sessions: below min_rows nothing trips.
    s1.batch_execute("INSERT INTO a (stage) SELECT 'seed' FROM generate_series(1, 10)").unwrap();
    for _ in 0..3 {
        assert_eq!(insert_bogus(&mut s1, "a").unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION));
        assert_eq!(insert_bogus(&mut s2, "a").unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION));
    }
    // 16 values seen (10 + 6 rejections), ratio 0.375 > 0.2, but fewer than min_rows (20).
    let tripped = |c: &mut Client, t: &str| -> bool {
        c.query_one(&format!("SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = '{t}'::regclass"), &[])
            .unwrap()
            .get(0)
    };
    assert!(!tripped(&mut watcher, "a"));
    s2.batch_execute("INSERT INTO a (stage) SELECT 'seed' FROM generate_series(1, 3)").unwrap();
    assert!(!tripped(&mut watcher, "a"), "19 seen");
    // The next rejection (20 seen, 7 rejected: 0.35) trips it, in session 2; the rejection
    // itself stands, with a WARNING before it.
    let e = insert_bogus(&mut s2, "a").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION));
    assert!(tripped(&mut watcher, "a"), "a trip is seen by another connected session");
    let r = watcher
        .query_one("SELECT trip_ratio, window_rejects FROM stage_norm.breakers WHERE datname = $1 AND table_name = 'a'", &[&db])
        .unwrap();
    let (ratio, rejects): (f64, f64) = (r.get(0), r.get(1));
    assert!((ratio - 7.0 / 20.0).abs() < 0.01, "ratio {ratio}");
    assert_eq!(rejects, 7.0);
    // Every session now stores unknown values on a (warn), and only on a.
    insert_bogus(&mut s1, "a").expect("capped at warn");
    insert_bogus(&mut s2, "a").expect("capped at warn");
    assert_eq!(insert_bogus(&mut s1, "b").unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION), "other tables unaffected");
    assert!(!tripped(&mut watcher, "b"));
    // One LOG line for the trip.
    let log = server_log();
    assert_eq!(log.matches("circuit breaker tripped on table \"public\".\"a\"").count(), 1);
    // reset_breaker is privileged, then restores enforcement for everyone.
    admin.batch_execute("DROP ROLE IF EXISTS sn_app; CREATE ROLE sn_app; GRANT USAGE ON SCHEMA stage_norm TO sn_app").unwrap();
    admin.batch_execute("SET ROLE sn_app").unwrap();
    let e = admin.batch_execute("SELECT stage_norm.reset_breaker('a')").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // What everyone may read of the breakers (for table_modes): the trip, not the window's
    // counts of every writer's traffic (security review #11).
    let r = admin
        .query_one("SELECT bool_or(tripped), count(window_values), count(window_rejects) FROM stage_norm._breakers(false)", &[])
        .unwrap();
    assert_eq!((r.get::<_, bool>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (true, 0, 0));
    // The log names the role that reset it, not reset_breaker's owner (security review #8).
    admin.batch_execute("RESET ROLE; GRANT EXECUTE ON FUNCTION stage_norm.reset_breaker(regclass) TO sn_app; SET ROLE sn_app").unwrap();
    let was: bool = admin.query_one("SELECT stage_norm.reset_breaker('a')", &[]).unwrap().get(0);
    assert!(was);
    admin.batch_execute("RESET ROLE").unwrap();
    let log = server_log();
    assert_eq!(log.matches("circuit breaker of table public.a reset by sn_app (session user postgres)").count(), 1, "{log}");
    assert!(!tripped(&mut watcher, "a"));
    assert_eq!(insert_bogus(&mut s1, "a").unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION));
    assert_eq!(insert_bogus(&mut s2, "a").unwrap_err().code(), Some(&SqlState::CHECK_VIOLATION));
    admin.batch_execute("DROP OWNED BY sn_app; DROP ROLE sn_app").unwrap();
}

#[test]
fn views_and_reset_are_privileged() {
    let db = "stats_priv";
    let mut c = fresh_db(db);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('t', 'stage');
         INSERT INTO t VALUES (1, 'seed');
         DROP ROLE IF EXISTS sn_plain; DROP ROLE IF EXISTS sn_mon;
         CREATE ROLE sn_plain; CREATE ROLE sn_mon IN ROLE pg_monitor;
         GRANT USAGE ON SCHEMA stage_norm TO sn_plain, sn_mon;",
    )
    .unwrap();
    c.batch_execute("SET ROLE sn_plain").unwrap();
    for q in ["SELECT * FROM stage_norm.stats", "SELECT * FROM stage_norm.stats_info", "SELECT stage_norm.reset_stats()"] {
        let e = c.batch_execute(q).unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{q}");
    }
    // table_modes stays readable by everyone, with the breaker's columns.
    c.batch_execute("SELECT breaker_tripped FROM stage_norm.table_modes").unwrap();
    c.batch_execute("RESET ROLE; SET ROLE sn_mon").unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM stage_norm.stats WHERE datname = $1", &[&db]).unwrap().get(0);
    assert_eq!(n, 8, "one row per outcome of t.stage");
    assert_eq!(c.batch_execute("SELECT stage_norm.reset_stats()").unwrap_err().code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    c.batch_execute("RESET ROLE; GRANT EXECUTE ON FUNCTION stage_norm.reset_stats() TO sn_mon; SET ROLE sn_mon").unwrap();
    c.batch_execute("SELECT stage_norm.reset_stats()").unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM stage_norm.stats WHERE datname = $1", &[&db]).unwrap().get(0);
    assert_eq!(n, 0, "reset frees the entries");
    c.batch_execute("RESET ROLE; INSERT INTO t VALUES (2, 'Seed')").unwrap();
    assert_eq!(counts(&mut c, db, "t"), ["normalized=1"], "a backend whose slot was freed finds a new one");
    c.batch_execute("REVOKE ALL ON FUNCTION stage_norm.reset_stats() FROM sn_mon; DROP OWNED BY sn_plain, sn_mon; DROP ROLE sn_plain, sn_mon").unwrap();
}

/// Kept over a clean restart (written at shutdown, read at start), gone after a crash; a full
/// table counts what it drops. Restarts the cluster: keep it last in this file's order.
#[test]
fn persistence_and_a_full_table() {
    let db = "stats_persist";
    let mut c = fresh_db(db);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('t', 'stage');
         INSERT INTO t SELECT i, 'Series A' FROM generate_series(1, 500) i;",
    )
    .unwrap();
    assert_eq!(counts(&mut c, db, "t"), ["normalized=500"]);
    drop(c);
    pg_ctl(&["-m", "fast", "-w", "restart"]);
    let mut c = connect(db);
    assert_eq!(counts(&mut c, db, "t"), ["normalized=500"], "kept over a clean restart");
    c.batch_execute("INSERT INTO t VALUES (1000, 'seed')").unwrap();
    drop(c);
    pg_ctl(&["-m", "immediate", "-w", "stop"]);
    pg_ctl(&["-w", "start"]);
    let mut c = connect(db);
    assert_eq!(counts(&mut c, db, "t"), Vec::<String>::new(), "discarded after a crash");
    // A full table: 10 column entries; the 11th column is not tracked, and it shows.
    c.batch_execute("ALTER SYSTEM SET stage_norm.max_tracked_columns = 10").unwrap();
    drop(c);
    pg_ctl(&["-m", "fast", "-w", "restart"]);
    let mut c = connect(db);
    for i in 0..12 {
        c.batch_execute(&format!(
            "CREATE TABLE f{i} (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('f{i}', 'stage'); INSERT INTO f{i} VALUES (1, 'seed');"
        ))
        .unwrap();
    }
    let r = c.query_one("SELECT columns_used, columns_max, dropped > 0 FROM stage_norm.stats_info", &[]).unwrap();
    assert_eq!((r.get::<_, i32>(0), r.get::<_, i32>(1), r.get::<_, bool>(2)), (10, 10, true));
    // Tables beyond the limit still work (counted per session only).
    let n: i64 = c.query_one("SELECT passed FROM stage_norm.session_counters WHERE table_name = 'f11'::regclass", &[]).unwrap().get(0);
    assert_eq!(n, 1);
    c.batch_execute("ALTER SYSTEM RESET stage_norm.max_tracked_columns").unwrap();
    drop(c);
    pg_ctl(&["-m", "fast", "-w", "restart"]);
    connect(db).batch_execute("SELECT 1").unwrap();
}
