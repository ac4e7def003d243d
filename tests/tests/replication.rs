//! Operations (#19): how fast the emergency downgrade reaches every connected session of the
//! primary, and logical replication (a publisher and a subscriber database on loopback: apply
//! does not fire the trigger unless it is ENABLE ALWAYS).
use postgres::Client;
use stage_norm_client_tests::*;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn insert_unknown(c: &mut Client, id: i64) -> Result<u64, postgres::Error> {
    c.execute("INSERT INTO pc VALUES ($1, 'Serie Z')", &[&id])
}

/// `ALTER SYSTEM SET stage_norm.max_mode = 'warn'` + `pg_reload_conf()` on the primary, while 40
/// sessions keep writing unknown values (rejected under enforce): the time until each session's
/// statements stop being rejected. The old plan's target for a downgrade was under 30 s.
#[test]
fn downgrade_reaches_every_connected_session() {
    let mut admin = fresh_db("sn_downgrade");
    admin
        .batch_execute(
            "CREATE TABLE pc (id bigint PRIMARY KEY, stage text);
             SELECT stage_norm.attach('pc', 'stage');
             ALTER DATABASE sn_downgrade SET stage_norm.mode = 'enforce';",
        )
        .unwrap();
    const SESSIONS: i64 = 40;
    let start = Arc::new(Barrier::new(SESSIONS as usize + 1));
    let t_reload = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let handles: Vec<_> = (0..SESSIONS)
        .map(|s| {
            let (start, t_reload) = (start.clone(), t_reload.clone());
            thread::spawn(move || {
                let mut c = connect("sn_downgrade");
                let mut id = s * 1_000_000;
                assert!(insert_unknown(&mut c, id).is_err(), "enforce rejects before the downgrade");
                start.wait();
                // Write until a statement is accepted; its start minus the reload is this session's delay.
                loop {
                    id += 1;
                    let t = Instant::now();
                    if insert_unknown(&mut c, id).is_ok() {
                        let t0 = t_reload.lock().unwrap().expect("accepted before the reload");
                        return t.saturating_duration_since(t0);
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    start.wait();
    thread::sleep(Duration::from_millis(200)); // every session is rejecting
    let mut dba = connect("postgres");
    dba.batch_execute("ALTER SYSTEM SET stage_norm.max_mode = 'warn'").unwrap();
    *t_reload.lock().unwrap() = Some(Instant::now());
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut delays: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "downgrade reached {} connected sessions: median {:.1} ms, max {:.1} ms after ALTER SYSTEM (reload included)",
        delays.len(),
        ms(delays[delays.len() / 2]),
        ms(*delays.last().unwrap())
    );
    assert!(*delays.last().unwrap() < Duration::from_secs(30), "the old plan's ceiling: {delays:?}");
    assert!(*delays.last().unwrap() < Duration::from_secs(2), "a reload reaches sessions at their next statement: {delays:?}");
    dba.batch_execute("ALTER SYSTEM RESET stage_norm.max_mode").unwrap();
    dba.batch_execute("SELECT pg_reload_conf()").unwrap();
    drop(admin);
    thread::sleep(Duration::from_millis(300));
    connect("postgres").batch_execute("DROP DATABASE sn_downgrade WITH (FORCE)").unwrap();
}

fn rows(c: &mut Client, sql: &str) -> Vec<(i64, String)> {
    c.query(sql, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Waits (up to 30 s) until `sql` (one boolean) is true on `c`.
fn wait_until(c: &mut Client, sql: &str) {
    let t0 = Instant::now();
    while !c.query_one(sql, &[]).unwrap().get::<_, bool>(0) {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for: {sql}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A publisher and a subscriber database in the test cluster (wal_level = logical is set by
/// with-cluster.sh for this; the subscription connects over 127.0.0.1):
/// - the publisher enforces and normalizes: rows arrive canonical;
/// - by default the subscriber's trigger does not fire on apply (session_replication_role =
///   replica): a non-canonical row written on the publisher under off arrives as it is;
/// - with ENABLE ALWAYS TRIGGER it fires on apply too: such a row arrives normalized, and under
///   enforce an unknown value stops the apply worker (the subscription retries the same
///   transaction until someone fixes it: the documented consequence).
#[test]
fn logical_replication_apply() {
    let wal_level: String = connect("postgres").query_one("SHOW wal_level", &[]).unwrap().get(0);
    assert_eq!(wal_level, "logical", "scripts/with-cluster.sh sets wal_level = logical");
    let mut admin = connect("postgres");
    for db in ["sn_pub", "sn_sub"] {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    }
    let mut p = fresh_db("sn_pub");
    let mut s = fresh_db("sn_sub");
    let schema = "CREATE TABLE pc (id bigint PRIMARY KEY, stage text); SELECT stage_norm.attach('pc', 'stage');";
    p.batch_execute(schema).unwrap();
    s.batch_execute(schema).unwrap();
    p.batch_execute("CREATE PUBLICATION sn_pub FOR TABLE pc").unwrap();
    // Publisher and subscriber share the cluster: the slot is created first, on its own
    // (CREATE SUBSCRIPTION creating it would wait for its own transaction).
    p.batch_execute("SELECT pg_create_logical_replication_slot('sn_sub', 'pgoutput')").unwrap();
    s.batch_execute(&format!(
        "CREATE SUBSCRIPTION sn_sub CONNECTION '{}' PUBLICATION sn_pub WITH (create_slot = false)",
        dsn_for("sn_pub").replace('\'', "''")
    ))
    .unwrap();
    wait_until(&mut s, "SELECT coalesce(bool_and(srsubstate = 'r'), false) FROM pg_subscription_rel");

    // 1. The publisher enforces: what it stores, and so what is replicated, is canonical.
    p.batch_execute("SET stage_norm.mode = 'enforce'").unwrap();
    p.batch_execute("INSERT INTO pc VALUES (1, 'Series A '), (2, 'pre_seed')").unwrap();
    assert!(p.batch_execute("INSERT INTO pc VALUES (3, 'Serie Z')").is_err());
    wait_until(&mut s, "SELECT count(*) = 2 FROM pc");
    assert_eq!(rows(&mut s, "SELECT id, stage FROM pc ORDER BY id"), [(1, "series-a".into()), (2, "pre-seed".into())]);

    // 2. Default: the subscriber's trigger does not fire on apply.
    p.batch_execute("SET stage_norm.mode = 'off'").unwrap();
    p.batch_execute("INSERT INTO pc VALUES (10, 'seriesB')").unwrap();
    wait_until(&mut s, "SELECT count(*) = 1 FROM pc WHERE id = 10");
    assert_eq!(rows(&mut s, "SELECT id, stage FROM pc WHERE id = 10"), [(10, "seriesB".into())]);

    // 3. ENABLE ALWAYS: it fires on apply too, with the subscriber's own settings.
    s.batch_execute("ALTER TABLE pc ENABLE ALWAYS TRIGGER stage_norm_normalize").unwrap();
    p.batch_execute("INSERT INTO pc VALUES (11, 'seriesB')").unwrap();
    wait_until(&mut s, "SELECT count(*) = 1 FROM pc WHERE id = 11");
    assert_eq!(rows(&mut s, "SELECT id, stage FROM pc WHERE id = 11"), [(11, "series-b".into())]);
    // The publisher and subscriber now differ for row 11: what ALWAYS means.
    assert_eq!(rows(&mut p, "SELECT id, stage FROM pc WHERE id = 11"), [(11, "seriesB".into())]);

    // 4. ALWAYS + enforce on the subscriber: an unknown value stops the apply worker; later rows
    //    wait behind it until the value is fixed (here: an alias on the subscriber).
    s.batch_execute("SELECT stage_norm.set_table_mode('pc', 'enforce')").unwrap();
    p.batch_execute("INSERT INTO pc VALUES (20, 'Serie Z'); INSERT INTO pc VALUES (21, 'seed')").unwrap();
    wait_until(&mut s, "SELECT count(*) = 1 FROM pg_stat_subscription_stats WHERE subname = 'sn_sub' AND apply_error_count > 0");
    assert!(rows(&mut s, "SELECT id, stage FROM pc WHERE id >= 20").is_empty(), "apply is stuck on the unknown value");
    s.batch_execute("SELECT stage_norm.add_alias('Serie Z', 'series-a')")
        .unwrap();
    // The apply worker retries after wal_retrieve_retry_interval (5 s by default).
    wait_until(&mut s, "SELECT count(*) = 2 FROM pc WHERE id >= 20");
    assert_eq!(rows(&mut s, "SELECT id, stage FROM pc WHERE id >= 20 ORDER BY id"), [(20, "series-a".into()), (21, "seed".into())]);

    s.batch_execute("DROP SUBSCRIPTION sn_sub").unwrap();
    drop((p, s));
    for db in ["sn_pub", "sn_sub"] {
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
