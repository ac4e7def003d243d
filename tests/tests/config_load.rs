//! How a backend reads its configuration (#31): the mode overrides straight from the table's
//! blocks (src/heapread.rs), without its relation cache entry, and the aliases only at the first
//! label the rules do not know. Each test compares what fresh backends load with what SQL sees.
use std::thread;
use std::time::Duration;

use stage_norm_client_tests::*;

/// Tables whose effective mode in a fresh backend (session mode `shadow`, which no override
/// below uses) differs from what `table_mode_settings` says: must be none.
fn mismatches(db: &str) -> i64 {
    let mut c = connect(db);
    c.batch_execute("SET stage_norm.mode = shadow").unwrap();
    c.query_one(
        "SELECT count(*) FROM pg_class t LEFT JOIN stage_norm.table_mode_settings s ON s.tbl = t.oid \
          WHERE t.relname LIKE 'gov\\_%' AND t.relkind = 'r' \
            AND stage_norm._effective_mode(t.oid) IS DISTINCT FROM coalesce(s.mode, 'shadow')",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Several pages of overrides, updated (HOT and not), deleted, vacuumed, rewritten; an
/// uncommitted insert, update and delete in another session; an aborted insert: a fresh backend
/// loads exactly the committed overrides, every time.
#[test]
fn overrides_read_from_blocks_match_sql() {
    let db = "sn_config_blocks";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..400 LOOP EXECUTE format('CREATE TABLE gov_%s (id int, stage text)', i); END LOOP; END $$;
             INSERT INTO stage_norm.table_mode_settings (tbl, mode)
               SELECT oid, (ARRAY['off', 'warn', 'enforce'])[1 + oid::int % 3] FROM pg_class
                WHERE relname LIKE 'gov\\_%' AND relkind = 'r';",
        )
        .unwrap();
    let pages: i64 = admin
        .query_one("SELECT pg_relation_size('stage_norm.table_mode_settings') / current_setting('block_size')::int", &[])
        .unwrap()
        .get(0);
    assert!(pages >= 4, "the overrides span {pages} pages; the test wants several");
    assert_eq!(mismatches(db), 0, "after the first insert");

    admin
        .batch_execute(
            "UPDATE stage_norm.table_mode_settings SET mode = 'enforce' WHERE tbl::oid::int % 5 = 0;
             DELETE FROM stage_norm.table_mode_settings WHERE tbl::oid::int % 7 = 0;
             UPDATE stage_norm.table_mode_settings SET mode = 'off', set_by = 'someone_else' WHERE tbl::oid::int % 11 = 0;",
        )
        .unwrap();
    assert_eq!(mismatches(db), 0, "after updates and deletes (dead and HOT versions)");
    admin.batch_execute("VACUUM stage_norm.table_mode_settings").unwrap();
    assert_eq!(mismatches(db), 0, "after VACUUM (unused and redirected line pointers)");

    // Another session's uncommitted changes are not seen; neither are an aborted one's.
    let mut other = connect(db);
    other
        .batch_execute(
            "BEGIN;
             UPDATE stage_norm.table_mode_settings SET mode = 'shadow' WHERE tbl::oid::int % 3 = 0;
             DELETE FROM stage_norm.table_mode_settings WHERE tbl::oid::int % 13 = 0;
             CREATE TABLE gov_uncommitted (id int);
             INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('gov_uncommitted', 'enforce');",
        )
        .unwrap();
    admin
        .batch_execute(
            // (rows the other session holds are left alone: their row locks would wait)
            "BEGIN;
             UPDATE stage_norm.table_mode_settings SET mode = 'shadow' WHERE tbl::oid::int % 3 = 1 AND tbl::oid::int % 13 <> 0;
             DELETE FROM stage_norm.table_mode_settings WHERE tbl::oid::int % 3 = 2 AND tbl::oid::int % 13 <> 0;
             ROLLBACK;",
        )
        .unwrap();
    assert_eq!(mismatches(db), 0, "with another session's changes uncommitted and an aborted one's");
    other.batch_execute("COMMIT").unwrap();
    assert_eq!(mismatches(db), 0, "after the other session commits");
    let shadowed: i64 = connect(db)
        .query_one(
            "SELECT count(*) FROM stage_norm.table_mode_settings WHERE mode = 'shadow' AND stage_norm._effective_mode(tbl) = 'shadow'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(shadowed > 50, "the committed 'shadow' overrides are seen ({shadowed})");

    // A new file: VACUUM FULL, then TRUNCATE and a new row.
    admin.batch_execute("VACUUM FULL stage_norm.table_mode_settings").unwrap();
    assert_eq!(mismatches(db), 0, "after VACUUM FULL (a new file)");
    admin
        .batch_execute(
            "TRUNCATE stage_norm.table_mode_settings;
             INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('gov_1', 'warn');",
        )
        .unwrap();
    assert_eq!(mismatches(db), 0, "after TRUNCATE and one insert");
    let mut c = connect(db);
    c.batch_execute("SET stage_norm.mode = shadow").unwrap();
    let modes: Vec<String> = ["gov_1", "gov_2"]
        .iter()
        .map(|t| c.query_one("SELECT stage_norm._effective_mode($1::text::regclass)", &[t]).unwrap().get(0))
        .collect();
    assert_eq!(modes, ["warn", "shadow"]);

    // A column added with a default after rows were written: its value lives in pg_attribute
    // ("missing"), which the block reader does not serve; the table is read the usual way.
    admin
        .batch_execute(
            "INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('gov_2', 'enforce');
             ALTER TABLE stage_norm.table_mode_settings ADD COLUMN note text DEFAULT 'added later';",
        )
        .unwrap();
    assert_eq!(mismatches(db), 0, "with a column added with a default (atthasmissing)");
    admin.batch_execute("ALTER TABLE stage_norm.table_mode_settings DROP COLUMN note").unwrap();
    assert_eq!(mismatches(db), 0, "with that column dropped again");
}

/// A first write that needs the overrides waits for a transaction that holds the table
/// rewritten (TRUNCATE, ACCESS EXCLUSIVE), then reads what it committed, as `table_open` did.
#[test]
fn first_load_waits_for_a_truncate_and_sees_it() {
    let db = "sn_config_truncate";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "CREATE TABLE gov_t (id int, stage text);
             SELECT stage_norm.attach('gov_t', 'stage');
             SELECT stage_norm.set_table_mode('gov_t', 'off');",
        )
        .unwrap();
    let mut holder = connect(db);
    holder
        .batch_execute(
            "BEGIN; TRUNCATE stage_norm.table_mode_settings;
             INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('gov_t', 'enforce');",
        )
        .unwrap();
    let writer = thread::spawn(move || {
        let mut w = connect(db);
        w.batch_execute("SET stage_norm.mode = shadow").unwrap();
        let r = w.batch_execute("INSERT INTO gov_t VALUES (1, 'no such stage')");
        r.map_err(|e| e.as_db_error().map(|d| d.code().code().to_string()))
    });
    thread::sleep(Duration::from_millis(800));
    assert!(!writer.is_finished(), "the first load must wait for the TRUNCATE's lock");
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'stage_norm.table_mode_settings'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(waiting, 1, "it waits on table_mode_settings");
    holder.batch_execute("COMMIT").unwrap();
    let result = writer.join().unwrap();
    assert_eq!(result, Err(Some("23514".to_string())), "the committed 'enforce' override rejects the row");
}

/// The aliases are read at the first label the rules do not know, in whichever path meets it
/// first: the trigger in the middle of a statement, normalize_stage, a parallel worker.
#[test]
fn aliases_read_when_first_needed() {
    let db = "sn_config_aliases";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "SELECT stage_norm.add_alias('Angel', 'pre-seed'), stage_norm.add_alias('Mezzanine', 'series-c+');
             CREATE TABLE gov_a (id int, stage text);
             SELECT stage_norm.attach('gov_a', 'stage');
             CREATE TABLE labels AS SELECT i, CASE WHEN i % 3 = 0 THEN 'Angel' WHEN i % 3 = 1 THEN 'Series A ' ELSE 'Mezzanine' END AS l
               FROM generate_series(1, 30000) i;
             ANALYZE labels;",
        )
        .unwrap();
    // The trigger: known labels first, then one only an alias knows, in one statement.
    let mut w = connect(db);
    w.batch_execute("SET stage_norm.mode = enforce; INSERT INTO gov_a VALUES (1, 'seriesB'), (2, 'Series A '), (3, 'Angel')")
        .unwrap();
    let got: Vec<String> = w.query("SELECT stage FROM gov_a ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(got, ["series-b", "series-a", "pre-seed"]);
    // normalize_stage's first call in a backend, on a label only an alias knows.
    assert_eq!(normalize(&mut connect(db), "mezzanine").as_deref(), Some("series-c+"));
    // A backend that loaded its configuration without the aliases, then meets one.
    let mut r = connect(db);
    assert_eq!(normalize(&mut r, "Seed Round").as_deref(), Some("seed"));
    assert_eq!(normalize(&mut r, "Angel").as_deref(), Some("pre-seed"));
    assert_eq!(normalize(&mut r, "Unheard Of"), None);
    // Labels stored compressed and out of line reach normalize_stage's raw entry point toasted.
    admin
        .batch_execute(
            "CREATE TABLE long_labels (id int, l text);
             ALTER TABLE long_labels ALTER l SET STORAGE EXTERNAL;
             INSERT INTO long_labels VALUES (1, 'Angel' || repeat(' ', 300000));
             CREATE TABLE compressed_labels (id int, l text);
             INSERT INTO compressed_labels VALUES (1, '  Mezzanine' || repeat(' ', 300000));",
        )
        .unwrap();
    let mut t = connect(db);
    let stored: String = t
        .query_one("SELECT pg_column_compression(l) IS NULL AND pg_column_size(l) > 300000 FROM long_labels", &[])
        .unwrap()
        .get::<_, bool>(0)
        .to_string();
    assert_eq!(stored, "true", "stored out of line, uncompressed");
    let got: Vec<Option<String>> = ["long_labels", "compressed_labels"]
        .iter()
        .map(|t_| t.query_one(&format!("SELECT stage_norm.normalize_stage(l) FROM {t_}"), &[]).unwrap().get(0))
        .collect();
    assert_eq!(got, [Some("pre-seed".to_string()), Some("series-c+".to_string())]);

    // Removed in another session: the next statement's reload forgets them.
    admin.batch_execute("SELECT stage_norm.remove_alias('Angel')").unwrap();
    assert_eq!(normalize(&mut r, "Angel"), None);
    // Parallel workers read them too (each its own backend, with the statement's snapshot).
    let mut p = connect(db);
    let version: i32 = p.query_one("SELECT current_setting('server_version_num')::int", &[]).unwrap().get(0);
    let force = if version >= 160000 { "debug_parallel_query" } else { "force_parallel_mode" };
    p.batch_execute(&format!(
        "SET {force} = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;"
    ))
    .unwrap();
    let plan: String = p
        .query("EXPLAIN SELECT count(*) FROM labels WHERE stage_norm.normalize_stage(l) = 'series-c+'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("Gather"), "a parallel plan: {plan}");
    let n: i64 = p
        .query_one("SELECT count(*) FROM labels WHERE stage_norm.normalize_stage(l) = 'series-c+'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 10000);
    let n: i64 = p.query_one("SELECT count(*) FROM labels WHERE stage_norm.normalize_stage(l) IS NULL", &[]).unwrap().get(0);
    assert_eq!(n, 10000, "'Angel' was removed");
}
