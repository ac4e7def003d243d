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
