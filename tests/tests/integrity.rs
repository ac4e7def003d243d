//! The integrity of governed rows through real client connections (first fixed in #13): invalid
//! UTF-8, an earlier BEFORE trigger, foreign-key actions, domains (and a domain's CHECK that
//! changes the stage set), DDL on governed columns (and its
//! survival of pg_dump/pg_restore), and the warning bound on partitioned tables.
use postgres::error::SqlState;
use stage_norm_client_tests::*;
use std::process::Command;

fn db_error(e: postgres::Error) -> postgres::error::DbError {
    e.as_db_error().cloned().unwrap_or_else(|| panic!("not a server error: {e}"))
}

/// Invalid UTF-8 from a client: NULL from the functions, the backend survives, 22021 from
/// stage_key, and the trigger rejects it in enforce with its error fields.
#[test]
fn invalid_utf8_is_an_unknown_label() {
    let mut c = fresh_db("sn_fix_utf8");
    c.batch_execute(
        "CREATE CAST (bytea AS text) WITHOUT FUNCTION;
         CREATE TABLE t (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('t', 'stage');",
    )
    .unwrap();
    for bytes in [&b"\xc3"[..], b"Seed\xc3", b"\xffseries a", b"\xed\xa0\x80"] {
        let r = c.query_one("SELECT stage_norm.normalize_stage($1::bytea::text), stage_norm.normalize_stage_builtin($1::bytea::text), stage_norm.is_canonical_stage($1::bytea::text)", &[&bytes]);
        let row = r.unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
        if std::str::from_utf8(bytes).is_err() {
            assert_eq!(row.get::<_, Option<String>>(0), None, "{bytes:?}");
            assert_eq!(row.get::<_, Option<String>>(1), None, "{bytes:?}");
            assert!(!row.get::<_, bool>(2), "{bytes:?}");
        }
    }
    let e = db_error(c.query_one("SELECT stage_norm.stage_key($1::bytea::text)", &[&&b"\xc3"[..]]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHARACTER_NOT_IN_REPERTOIRE);
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let e = db_error(c.execute("INSERT INTO t VALUES (1, $1::bytea::text)", &[&&b"Seed\xc3"[..]]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!((e.table(), e.column()), (Some("t"), Some("stage")));
    assert!(e.hint().unwrap().contains("not valid UTF-8"), "{:?}", e.hint());
    // The connection (and the backend) are still there.
    assert_eq!(normalize(&mut c, "Seed").as_deref(), Some("seed"));
}

/// A BEFORE trigger that fires earlier and changes the governed column on UPDATE no longer
/// slips a value past enforce; an UPDATE that leaves an old unknown value alone still works.
#[test]
fn earlier_trigger_cannot_bypass_enforce() {
    let mut c = fresh_db("sn_fix_order");
    c.batch_execute(
        "CREATE TABLE e (id int PRIMARY KEY, stage text, note text);
         SELECT stage_norm.attach('e', 'stage');
         INSERT INTO e VALUES (1, 'seed', 'x'), (2, 'Legacy', 'y');
         CREATE FUNCTION e_copy() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.note LIKE 'copy:%' THEN NEW.stage := substr(NEW.note, 6); END IF; RETURN NEW; END $$;
         CREATE TRIGGER a_copy BEFORE UPDATE ON e FOR EACH ROW EXECUTE FUNCTION e_copy();
         SET stage_norm.mode = enforce;",
    )
    .unwrap();
    let e = db_error(c.execute("UPDATE e SET note = 'copy:growth' WHERE id = 1", &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!(e.column(), Some("stage"));
    c.execute("UPDATE e SET note = 'copy:Series B' WHERE id = 1", &[]).unwrap();
    c.execute("UPDATE e SET note = 'z' WHERE id = 2", &[]).unwrap();
    let rows: Vec<(i32, String)> =
        c.query("SELECT id, stage FROM e ORDER BY id", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, vec![(1, "series-b".to_string()), (2, "Legacy".to_string())]);
}

/// ON UPDATE CASCADE never leaves a child row referencing nothing: warn keeps the cascaded
/// value, enforce fails the parent's UPDATE with the child's error fields.
#[test]
fn cascades_never_orphan_rows() {
    let mut c = fresh_db("sn_fix_fk");
    c.batch_execute(
        "CREATE TABLE fk_p (stage text PRIMARY KEY);
         CREATE TABLE fk_c (id int PRIMARY KEY, stage text REFERENCES fk_p ON UPDATE CASCADE ON DELETE CASCADE);
         SELECT stage_norm.attach('fk_c', 'stage');
         INSERT INTO fk_p VALUES ('seed'), ('series-a');
         INSERT INTO fk_c VALUES (1, 'seed'), (2, 'series-a');
         UPDATE fk_p SET stage = 'Seed' WHERE stage = 'seed';",
    )
    .unwrap();
    let orphans: i64 = c
        .query_one("SELECT count(*) FROM fk_c c WHERE NOT EXISTS (SELECT FROM fk_p p WHERE p.stage = c.stage)", &[])
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let e = db_error(c.execute("UPDATE fk_p SET stage = 'SERIES A' WHERE stage = 'series-a'", &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!((e.table(), e.column()), (Some("fk_c"), Some("stage")));
    assert!(e.message().contains("foreign-key action"), "{}", e.message());
    // ON DELETE CASCADE still reaches every child, and the FK can be re-validated.
    c.batch_execute(
        "DELETE FROM fk_p WHERE stage = 'Seed';
         ALTER TABLE fk_c DROP CONSTRAINT fk_c_stage_fkey;
         ALTER TABLE fk_c ADD FOREIGN KEY (stage) REFERENCES fk_p;",
    )
    .unwrap();
    let left: i64 = c.query_one("SELECT count(*) FROM fk_c", &[]).unwrap().get(0);
    assert_eq!(left, 1);
}

/// A domain-typed column never stores a rewritten value its domain refuses.
#[test]
fn domains_are_respected() {
    let mut c = fresh_db("sn_fix_domain");
    c.batch_execute(
        "CREATE DOMAIN d AS text CHECK (VALUE IN ('Seed', 'a', 'series-a', 'Series A'));
         CREATE TABLE dt (id int PRIMARY KEY, stage d);
         SELECT stage_norm.attach('dt', 'stage');
         INSERT INTO dt VALUES (1, 'Seed'), (2, 'Series A');",
    )
    .unwrap();
    let bad: i64 = c
        .query_one("SELECT count(*) FROM dt WHERE stage::text NOT IN ('Seed', 'a', 'series-a', 'Series A')", &[])
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    let stored: Vec<String> = c.query("SELECT stage FROM dt ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["Seed", "series-a"]);
    c.batch_execute("SET stage_norm.mode = enforce").unwrap();
    let e = db_error(c.execute("INSERT INTO dt VALUES (3, 'Seed')", &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert!(e.message().contains("domain"), "{}", e.message());
}

/// A domain's CHECK that changes the stage set while the trigger checks the canonical stages
/// against it (once per canonical value, when it first resolves the table): the row is judged
/// against the set the cache then holds, never with the old set's canonical values (before the
/// fix, adding a stage first stored `Series A` as `series-b`); a CHECK that changes the set
/// every time fails the statement with 55000.
#[test]
fn a_domain_check_that_changes_the_stage_set() {
    let mut c = fresh_db("sn_fix_domain_set");
    c.batch_execute(
        "SET stage_norm.mode = enforce;
         CREATE FUNCTION flip(t text) RETURNS bool LANGUAGE plpgsql AS $$
         BEGIN
           -- pre-seed: a canonical value the trigger checks, never the row's own value
           IF t = 'pre-seed' AND current_setting('x.flip', true) IN ('once', 'always') THEN
             IF current_setting('x.flip') = 'once' THEN PERFORM set_config('x.flip', 'done', true); END IF;
             IF 'angel' = ANY (ARRAY(SELECT stage_norm.canonical_stages())) THEN
               PERFORM stage_norm.reset_stages();
             ELSE
               PERFORM stage_norm.set_stages('angel', 'pre-seed', 'seed', 'series-a', 'series-b', 'series-c+');
             END IF;
           END IF;
           RETURN stage_norm.normalize_stage(t) IS NOT NULL;
         END $$;
         CREATE DOMAIN sd AS text CHECK (flip(VALUE));
         CREATE TABLE ds (id int PRIMARY KEY, stage sd);
         SELECT stage_norm.attach('ds', 'stage');",
    )
    .unwrap();
    c.batch_execute("BEGIN; SET LOCAL x.flip = 'once'; INSERT INTO ds VALUES (1, 'Series A'), (2, 'seed round');").unwrap();
    let stored: Vec<String> = c.query("SELECT stage FROM ds ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["series-a", "seed"]);
    let set: Vec<String> = c.query("SELECT stage_norm.canonical_stages()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(set.first().map(String::as_str), Some("angel"), "the CHECK changed the set: {set:?}");
    c.batch_execute("ROLLBACK").unwrap();
    c.batch_execute("BEGIN; SET LOCAL x.flip = 'always'").unwrap();
    let e = db_error(c.execute("INSERT INTO ds VALUES (3, 'Series A')", &[]).unwrap_err());
    assert_eq!(e.code(), &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert!(e.message().contains("stage set changed"), "{}", e.message());
    c.batch_execute("ROLLBACK").unwrap();
    // Without the CHECK's change, the same rows as ever.
    c.batch_execute("INSERT INTO ds VALUES (4, 'Series A')").unwrap();
    let s: String = c.query_one("SELECT stage FROM ds WHERE id = 4", &[]).unwrap().get(0);
    assert_eq!(s, "series-a");
}

/// DDL on governed columns behaves as for a column in a trigger's UPDATE OF list, and the
/// dependencies come back after pg_dump/pg_restore (the event trigger records them).
#[test]
fn ddl_on_governed_columns_and_restore() {
    let mut c = fresh_db("sn_fix_ddl");
    c.batch_execute(
        "CREATE TABLE g (id int PRIMARY KEY, stage text, other text);
         SELECT stage_norm.attach('g', 'stage');
         CREATE TABLE pt (id int, stage text) PARTITION BY LIST (id);
         CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1);
         SELECT stage_norm.attach('pt', 'stage');",
    )
    .unwrap();
    let e = db_error(c.batch_execute("ALTER TABLE g DROP COLUMN stage").unwrap_err());
    assert_eq!(e.code(), &SqlState::DEPENDENT_OBJECTS_STILL_EXIST);
    let e = db_error(c.batch_execute("ALTER TABLE g ALTER COLUMN stage TYPE int USING NULL").unwrap_err());
    assert_eq!(e.code(), &SqlState::FEATURE_NOT_SUPPORTED);
    c.batch_execute("ALTER TABLE g RENAME COLUMN stage TO phase").unwrap();
    c.execute("INSERT INTO g VALUES (1, 'Series A', 'x')", &[]).unwrap();
    let v: String = c.query_one("SELECT phase FROM g", &[]).unwrap().get(0);
    assert_eq!(v, "series-a");

    // Both formats, a partitioned governed table included (its partitions' summary triggers
    // come from the dump, not from the event trigger: no "already exists").
    for format in [DumpFormat::Custom, DumpFormat::Plain] {
        let mut r = dump_and_restore("sn_fix_ddl", "sn_fix_ddl_r", format);
        let e = db_error(r.batch_execute("ALTER TABLE g DROP COLUMN phase").unwrap_err());
        assert_eq!(e.code(), &SqlState::DEPENDENT_OBJECTS_STILL_EXIST, "{format:?}: restored trigger lost its column dependency");
        r.execute("INSERT INTO g VALUES (2, 'pre seed', 'y')", &[]).unwrap();
        let v: String = r.query_one("SELECT phase FROM g WHERE id = 2", &[]).unwrap().get(0);
        assert_eq!(v, "pre-seed", "{format:?}");
        r.execute("INSERT INTO pt1 VALUES (1, 'Seed Round')", &[]).unwrap();
        let v: String = r.query_one("SELECT stage FROM pt", &[]).unwrap().get(0);
        assert_eq!(v, "seed", "{format:?}");
        let summaries: i64 = r
            .query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'stage_norm_summary' AND tgrelid IN ('pt'::regclass, 'pt1'::regclass)", &[])
            .unwrap()
            .get(0);
        assert_eq!(summaries, 2, "{format:?}");
    }
}

/// An INSERT into a 20-partition table shows 3 WARNINGs and one summary, naming the parent.
#[test]
fn partitioned_tables_bound_warnings_per_statement() {
    let mut c = fresh_db("sn_fix_parts");
    c.batch_execute(
        "CREATE TABLE pt (id int, stage text) PARTITION BY RANGE (id);
         SELECT stage_norm.attach('pt', 'stage');
         DO $$ BEGIN FOR i IN 0..19 LOOP
           EXECUTE format('CREATE TABLE pt_%s PARTITION OF pt FOR VALUES FROM (%s) TO (%s)', i, i * 100, i * 100 + 100);
         END LOOP; END $$;",
    )
    .unwrap();
    let sql = "INSERT INTO pt SELECT p * 100 + k, 'mystery' FROM generate_series(0, 19) p, generate_series(1, 10) k;";
    let out = Command::new("psql").args(cli_args()).args(["-X", "-d", "sn_fix_parts", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("WARNING:")).collect();
    assert_eq!(warnings.len(), 4, "{stderr}");
    assert!(warnings[0].contains("table \"pt\" (partition \"pt_0\")"), "{}", warnings[0]);
    assert!(warnings[3].contains("197 more unknown stage values in table \"pt\""), "{}", warnings[3]);
}
