//! Alias behaviour seen through real client connections.
use stage_norm_client_tests::*;

/// A change committed by one session is seen by an already-connected session at its next
/// statement, whatever that session's isolation level, and never before the commit.
#[test]
fn alias_visibility_across_sessions() {
    let mut admin = fresh_db("sn_alias_vis");
    let mut reader = connect("sn_alias_vis");
    // Warm the reader's cache so that what follows exercises invalidation, not a first load.
    assert_eq!(normalize(&mut reader, "Angel"), None);

    admin.batch_execute("BEGIN; SELECT stage_norm.add_alias('Angel', 'pre-seed');").unwrap();
    assert_eq!(normalize(&mut reader, "Angel"), None, "uncommitted alias must not be visible");
    admin.batch_execute("COMMIT").unwrap();
    assert_eq!(normalize(&mut reader, "Angel").as_deref(), Some("pre-seed"));

    // Inside a REPEATABLE READ transaction that began before the change.
    reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(normalize(&mut reader, "Bridge"), None);
    admin.batch_execute("SELECT stage_norm.add_alias('Bridge', 'seed')").unwrap();
    assert_eq!(normalize(&mut reader, "Bridge").as_deref(), Some("seed"));
    admin.batch_execute("SELECT stage_norm.remove_alias('Angel')").unwrap();
    assert_eq!(normalize(&mut reader, "Angel"), None);
    reader.batch_execute("COMMIT").unwrap();

    // A reader that holds a lock on its table already (so takes no new lock per statement).
    reader.batch_execute("CREATE TABLE labels (l text); INSERT INTO labels VALUES ('Mezzanine')").unwrap();
    reader.batch_execute("BEGIN").unwrap();
    let q = "SELECT stage_norm.normalize_stage(l) FROM labels";
    assert_eq!(reader.query_one(q, &[]).unwrap().get::<_, Option<String>>(0), None);
    admin.batch_execute("SELECT stage_norm.add_alias('Mezzanine', 'series-c+')").unwrap();
    assert_eq!(reader.query_one(q, &[]).unwrap().get::<_, Option<String>>(0).as_deref(), Some("series-c+"));
    reader.batch_execute("COMMIT").unwrap();
}

/// Many sessions keep their caches coherent while aliases flip, in normalize_stage and in the
/// trigger (whose memo of recent labels must forget 'Flip' at every flip).
#[test]
fn alias_flips_seen_by_every_session() {
    let mut admin = fresh_db("sn_alias_flip");
    admin
        .batch_execute("CREATE TABLE flips (id serial PRIMARY KEY, stage text); SELECT stage_norm.attach('flips', 'stage')")
        .unwrap();
    let mut readers: Vec<_> = (0..4).map(|_| connect("sn_alias_flip")).collect();
    for round in 0..20 {
        let add = round % 2 == 0;
        if add {
            admin.batch_execute("SELECT stage_norm.add_alias('Flip', 'series-b')").unwrap();
        } else {
            admin.batch_execute("SELECT stage_norm.remove_alias('Flip')").unwrap();
        }
        for r in &mut readers {
            let want = if add { Some("series-b") } else { None };
            assert_eq!(normalize(r, "flip").as_deref(), want, "round {round}");
            // warn mode: an unknown label is stored as it is.
            let stored: String = r
                .query_one("INSERT INTO flips (stage) VALUES ('Flip') RETURNING stage", &[])
                .unwrap()
                .get(0);
            assert_eq!(stored, want.unwrap_or("Flip"), "round {round}, trigger");
        }
    }
}

/// Errors carry a SQLSTATE that a client can branch on.
#[test]
fn alias_errors_have_sqlstates() {
    let mut c = fresh_db("sn_alias_err");
    let e = c.batch_execute("SELECT stage_norm.add_alias('Bridge', 'Series A')").unwrap_err();
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "22023");
    assert!(db.detail().unwrap().contains("pre-seed, seed, series-a, series-b, series-c+"));
    assert!(db.hint().is_some());
    c.batch_execute("SELECT stage_norm.add_alias('Bridge', 'seed')").unwrap();
    let e = c.batch_execute("SELECT stage_norm.add_alias('bridge', 'series-a')").unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23505");
}

/// Aliases survive pg_dump and pg_restore into a new database.
#[test]
fn aliases_survive_dump_and_restore() {
    let mut c = fresh_db("sn_dump_src");
    c.batch_execute("SELECT stage_norm.add_alias('Angel Round', 'pre-seed'); SELECT stage_norm.add_alias('Growth', 'series-c+');")
        .unwrap();
    // A per-table override and the trigger travel too (the override is a regclass: by name).
    c.batch_execute(
        "CREATE TABLE pc (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('pc', 'stage');
         SELECT stage_norm.set_table_mode('pc', 'enforce');",
    )
    .unwrap();
    let mut r = dump_and_restore("sn_dump_src", "sn_dump_dst", DumpFormat::Custom);
    let rows: Vec<(String, String)> = r
        .query("SELECT alias_key, stage FROM stage_norm.aliases ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(rows, [("angelround".into(), "pre-seed".into()), ("growth".into(), "series-c+".into())]);
    assert_eq!(normalize(&mut r, "ANGEL-ROUND").as_deref(), Some("pre-seed"));
    assert_eq!(normalize(&mut r, "growth").as_deref(), Some("series-c+"));
    let row = r
        .query_one("SELECT table_name::text, columns::text, override_mode, effective_mode FROM stage_norm.table_modes", &[])
        .unwrap();
    let got: (String, String, String, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(got, ("pc".into(), "{stage}".into(), "enforce".into(), "enforce".into()));
    let e = r.execute("INSERT INTO pc VALUES (1, 'Nope')", &[]).unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23514");
}
