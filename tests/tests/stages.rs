//! A fund's own stage set through real connections: a change reaches an already-connected
//! session (and its trigger) at its next statement; a custom set survives pg_dump/pg_restore.
use stage_norm_client_tests::*;

const SEVEN: &str = "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth')";

#[test]
fn a_set_change_reaches_connected_sessions() {
    let mut dba = fresh_db("sn_stages_vis");
    dba.batch_execute(
        "CREATE TABLE deals (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('deals', 'stage');",
    )
    .unwrap();
    let mut app = connect("sn_stages_vis");
    app.execute("INSERT INTO deals VALUES (1, 'Series D')", &[]).unwrap(); // loads the cache and the trigger's entry
    assert_eq!(normalize(&mut app, "Series D").as_deref(), Some("series-c+"));
    dba.batch_execute(SEVEN).unwrap();
    // The connected session's next statement sees the new set, in the function and the trigger.
    assert_eq!(normalize(&mut app, "Series D").as_deref(), Some("series-d"));
    app.execute("INSERT INTO deals VALUES (2, 'series d2'), (3, 'Growth')", &[]).unwrap();
    let rows: Vec<String> = app.query("SELECT stage FROM deals ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, ["series-c+", "series-d", "growth"]);
    let rank: Option<i32> = app.query_one("SELECT stage_norm.stage_rank('growth')", &[]).unwrap().get(0);
    assert_eq!(rank, Some(7));
    // A change inside an open transaction is not seen by others until it commits.
    dba.batch_execute("BEGIN; SELECT stage_norm.rename_stage('growth', 'pre-ipo');").unwrap();
    assert_eq!(normalize(&mut app, "growth").as_deref(), Some("growth"));
    dba.batch_execute("COMMIT").unwrap();
    assert_eq!(normalize(&mut app, "growth"), None);
    assert_eq!(normalize(&mut app, "Pre IPO").as_deref(), Some("pre-ipo"));
    // And back.
    dba.batch_execute("UPDATE deals SET stage = 'series-c+' WHERE stage IN ('series-d', 'growth'); SELECT stage_norm.reset_stages();").unwrap();
    assert_eq!(normalize(&mut app, "Series D").as_deref(), Some("series-c+"));
}

#[test]
fn a_custom_set_survives_dump_and_restore() {
    let mut c = fresh_db("sn_stages_dump");
    c.batch_execute(SEVEN).unwrap();
    c.batch_execute(
        "SELECT stage_norm.add_alias('Series E', 'growth');
         CREATE TABLE deals (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('deals', 'stage');
         INSERT INTO deals VALUES (1, 'Growth'), (2, 'series e'), (3, 'Series D');",
    )
    .unwrap();
    c.batch_execute("CALL stage_norm.add_check('deals', 'stage')").unwrap();
    let before: Vec<(i32, String)> =
        c.query("SELECT position, stage FROM stage_norm.stages ORDER BY 1", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    for format in [DumpFormat::Custom, DumpFormat::Plain] {
        let mut r = dump_and_restore("sn_stages_dump", "sn_stages_restored", format);
        let after: Vec<(i32, String)> =
            r.query("SELECT position, stage FROM stage_norm.stages ORDER BY 1", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(after, before, "{format:?}");
        assert_eq!(normalize(&mut r, "Series E").as_deref(), Some("growth"), "{format:?}");
        assert_eq!(normalize(&mut r, "series d2").as_deref(), Some("series-d"), "{format:?}");
        let rows: Vec<String> = r.query("SELECT stage FROM deals ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(rows, ["growth", "growth", "series-d"], "{format:?}");
        r.execute("INSERT INTO deals VALUES (4, 'Series C')", &[]).unwrap();
        let v: String = r.query_one("SELECT stage FROM deals WHERE id = 4", &[]).unwrap().get(0);
        assert_eq!(v, "series-c", "{format:?}");
    }
}

/// A set change and concurrent writers serialize: an uncommitted row under a CHECK, an
/// uncommitted alias, and a concurrent rename are all seen, never lost.
#[test]
fn set_changes_and_writers_serialize() {
    use std::time::Duration;
    let mut dba = fresh_db("sn_stages_race");
    dba.batch_execute("CREATE TABLE d (id int, stage text)").unwrap();
    dba.batch_execute("CALL stage_norm.add_check('d', 'stage')").unwrap();
    let change = |sql: &'static str| {
        std::thread::spawn(move || {
            let mut b = connect("sn_stages_race");
            b.batch_execute(sql).map_err(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default())
        })
    };

    // 1. A writer's uncommitted row: the change waits for it, then refuses (23514).
    let mut a = connect("sn_stages_race");
    a.batch_execute("BEGIN; INSERT INTO d VALUES (1, 'series-c+')").unwrap();
    let b = change("SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'growth')");
    std::thread::sleep(Duration::from_millis(700));
    assert!(!b.is_finished(), "the set change must wait for the writer");
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(b.join().unwrap(), Err("23514".to_string()));

    // 2. An uncommitted alias to a stage that would go: the change waits, then refuses (2BP01).
    a.batch_execute("BEGIN; SELECT stage_norm.add_alias('Angel', 'series-c+')").unwrap();
    let b = change("DELETE FROM d; SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'growth')");
    std::thread::sleep(Duration::from_millis(700));
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(b.join().unwrap(), Err("2BP01".to_string()));
    let rows: i64 = dba.query_one("SELECT count(*) FROM d", &[]).unwrap().get(0);
    assert_eq!(rows, 1, "the refused change rolled back its DELETE too");

    // 3. Two renames at once: the second waits and applies to the first's result.
    dba.batch_execute("SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'growth')").unwrap();
    a.batch_execute("BEGIN; SELECT stage_norm.rename_stage('growth', 'pre-ipo')").unwrap();
    let b = change("SELECT stage_norm.rename_stage('seed', 'seed-stage')");
    std::thread::sleep(Duration::from_millis(700));
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(b.join().unwrap(), Ok(()));
    let set: Vec<String> =
        dba.query("SELECT s FROM stage_norm.canonical_stages() AS s", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(set, ["pre-seed", "seed-stage", "series-a", "series-b", "series-c+", "pre-ipo"]);
}
