//! What PostgreSQL 16, 17 and 18 added that reaches a governed row (#29), each tried on the
//! server under test (STAGE_NORM_PG: `make PG=17|18 version-test`), and skipped below the version
//! that has it:
//! - MERGE (15+) inserting and updating a governed column; MERGE ... RETURNING and MERGE into an
//!   auto-updatable view over a governed table (17);
//! - virtual generated columns (18): the in-row rewrite of a row that has one stores the bytes
//!   PostgreSQL itself stores for the same values (page bytes compared, amcheck), and attach
//!   refuses to govern one (428C9, as for a stored one); `RETURNING old.*, new.*` (18) shows the
//!   value before and the normalized value after.
use postgres::Client;
use stage_norm_client_tests::*;

fn setup(db: &str) -> Client {
    let mut c = fresh_db(db);
    c.batch_execute("CREATE TABLE vm (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('vm', 'stage');").unwrap();
    c
}

fn stages(c: &mut Client, table: &str) -> Vec<(i32, Option<String>)> {
    c.query(&format!("SELECT id, stage FROM {table} ORDER BY id"), &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[test]
fn merge_writes_governed_rows() {
    let mut c = setup("sn_versions_merge");
    c.batch_execute("INSERT INTO vm VALUES (1, 'seed')").unwrap();
    c.batch_execute(
        "MERGE INTO vm USING (VALUES (1, 'Series A '), (2, 'pre_seed')) s(id, st) ON vm.id = s.id
           WHEN MATCHED THEN UPDATE SET stage = s.st WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.st)",
    )
    .unwrap();
    assert_eq!(stages(&mut c, "vm"), [(1, Some("series-a".into())), (2, Some("pre-seed".into()))]);
    if pg_major() < 17 {
        println!("MERGE ... RETURNING and MERGE into a view: PostgreSQL 17 and later");
        return;
    }
    let rows = c
        .query(
            "MERGE INTO vm USING (VALUES (2, 'seriesB'), (3, 'Seed Round')) s(id, st) ON vm.id = s.id
               WHEN MATCHED THEN UPDATE SET stage = s.st WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.st)
             RETURNING merge_action(), vm.id, vm.stage",
            &[],
        )
        .unwrap();
    let got: Vec<(String, i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, [("UPDATE".into(), 2, "series-b".into()), ("INSERT".into(), 3, "seed".into())], "RETURNING shows the stored values");
    c.batch_execute(
        "CREATE VIEW mv AS SELECT id, stage FROM vm;
         MERGE INTO mv USING (VALUES (4, 'series c+ '), (1, 'PRE-SEED')) s(id, st) ON mv.id = s.id
           WHEN MATCHED THEN UPDATE SET stage = s.st WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.st);",
    )
    .unwrap();
    assert_eq!(
        stages(&mut c, "vm"),
        [(1, Some("pre-seed".into())), (2, Some("series-b".into())), (3, Some("seed".into())), (4, Some("series-c+".into()))]
    );
    // enforce: MERGE is refused like INSERT and UPDATE.
    c.batch_execute("SELECT stage_norm.set_table_mode('vm', 'enforce')").unwrap();
    let err = c
        .batch_execute("MERGE INTO mv USING (VALUES (5, 'Angel')) s(id, st) ON mv.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.st)")
        .unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("23514"), "{err}");
}

/// Page bytes of every current tuple version of `table`'s first page (its t_ctid points at
/// itself), by id: the null/varwidth/external flags, t_hoff, null bitmap, data.
fn page(c: &mut Client, table: &str) -> Vec<(i32, i32, Option<String>, Vec<u8>)> {
    c.query(
        &format!(
            "SELECT t_infomask & 7, t_hoff::int, t_bits, t_data FROM heap_page_items(get_raw_page('{table}', 0))
              WHERE t_ctid = ('(0,' || lp || ')')::tid ORDER BY t_data"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[test]
fn virtual_generated_columns() {
    if pg_major() < 18 {
        println!("virtual generated columns and RETURNING old/new: PostgreSQL 18 and later");
        return;
    }
    let mut c = fresh_db("sn_versions_virtual");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pageinspect; CREATE EXTENSION IF NOT EXISTS amcheck").unwrap();
    let ddl = |t: &str| {
        format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, a smallint, stage text, v text GENERATED ALWAYS AS (upper(stage)) VIRTUAL,
                               b bigint, w int GENERATED ALWAYS AS (a * 2) STORED, stage2 varchar(20), z text)"
        )
    };
    c.batch_execute(&format!("{}; {}", ddl("vt"), ddl("vr"))).unwrap();
    c.batch_execute("SELECT stage_norm.attach('vt', 'stage', 'stage2')").unwrap();
    // attach refuses the virtual column itself, as it does a stored one.
    let err = c.batch_execute("SELECT stage_norm.attach('vr', 'v')").unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("428C9"), "{err}");
    let rows = [
        (1, "Series A ", "pre_seed", "x"),
        (2, "seed", "SERIES B", "a longer value to move"),
        (3, "Seed Round", "Series C Plus", ""),
        (4, "pre-seed", "series-a", "z"),
    ];
    for (id, s, s2, z) in rows {
        c.execute("INSERT INTO vt (id, a, stage, b, stage2, z) VALUES ($1, 7, $2, 99, $3, $4)", &[&id, &s, &s2, &z]).unwrap();
        c.execute(
            "INSERT INTO vr (id, a, stage, b, stage2, z) VALUES ($1, 7, stage_norm.normalize_stage($2), 99, stage_norm.normalize_stage($3), $4)",
            &[&id, &s, &s2, &z],
        )
        .unwrap();
    }
    let v: Vec<(String, String)> =
        c.query("SELECT stage, v FROM vt ORDER BY id", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(v[0], ("series-a".to_string(), "SERIES-A".to_string()), "the virtual column reads the normalized value");
    assert_eq!(page(&mut c, "vt"), page(&mut c, "vr"), "inserted: the bytes PostgreSQL stores itself");
    // RETURNING old and new (18).
    let r = c.query_one("UPDATE vt SET stage = 'seriesB' WHERE id = 1 RETURNING old.stage, new.stage, new.v", &[]).unwrap();
    let got: (String, String, String) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(got, ("series-a".into(), "series-b".into(), "SERIES-B".into()));
    c.batch_execute("UPDATE vr SET stage = 'series-b' WHERE id = 1").unwrap();
    c.batch_execute("UPDATE vt SET stage2 = 'Pre Seed', z = z || '!' WHERE id > 1; UPDATE vr SET stage2 = 'pre-seed', z = z || '!' WHERE id > 1")
        .unwrap();
    assert_eq!(page(&mut c, "vt"), page(&mut c, "vr"), "updated: the bytes PostgreSQL stores itself");
    let corrupt: i64 = c.query_one("SELECT count(*) FROM verify_heapam('vt')", &[]).unwrap().get(0);
    assert_eq!(corrupt, 0, "amcheck");
}
