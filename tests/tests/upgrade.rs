//! ALTER EXTENSION stage_norm UPDATE from 0.1.0 (the frozen sql/stage_norm--0.1.0.sql) with
//! this release's shared library: the 0.1.0 database keeps working before the update, and after
//! it the 0.2.0 behaviour applies to triggers attached under 0.1.0. (The full catalog comparison
//! with a fresh install belongs to the operations issue.)
use postgres::error::SqlState;
use stage_norm_client_tests::*;

#[test]
fn update_from_0_1_0() {
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS sn_upgrade WITH (FORCE)").unwrap();
    admin.batch_execute("CREATE DATABASE sn_upgrade").unwrap();
    let mut c = connect("sn_upgrade");
    c.batch_execute(
        "CREATE EXTENSION stage_norm VERSION '0.1.0';
         CREATE TABLE p (id int, stage text) PARTITION BY RANGE (id);
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
         SELECT stage_norm.attach('p', 'stage');
         SELECT stage_norm.add_alias('Angel', 'pre-seed');",
    )
    .unwrap();
    // The new library serves the 0.1.0 SQL objects.
    c.execute("INSERT INTO p VALUES (1, 'Angel'), (2, 'Series A')", &[]).unwrap();
    assert_eq!(normalize(&mut c, "angel").as_deref(), Some("pre-seed"));
    c.batch_execute("ALTER EXTENSION stage_norm UPDATE").unwrap();
    let v: String = c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'", &[]).unwrap().get(0);
    assert_eq!(v, "0.2.0");
    // The trigger attached under 0.1.0 now depends on its column; partitions got the summary.
    let e = c.batch_execute("ALTER TABLE p DROP COLUMN stage").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'p1'::regclass AND tgname = 'stage_norm_summary'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    c.batch_execute("ALTER TABLE p RENAME COLUMN stage TO phase").unwrap();
    c.execute("INSERT INTO p VALUES (3, 'seed round')", &[]).unwrap();
    let rows: Vec<String> = c.query("SELECT phase FROM p ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, ["pre-seed", "series-a", "seed"]);
}
