//! DDL beside writers (#27 item 1): the event trigger `stage_norm_ddl` runs inside every ALTER
//! TABLE of a governed table, and used to lock the table in SHARE ROW EXCLUSIVE mode each time,
//! so commands PostgreSQL runs beside writers (VALIDATE CONSTRAINT, SET STATISTICS, SET
//! (fillfactor), CLUSTER ON) waited for, and then blocked, every INSERT/UPDATE/DELETE. It now
//! takes no lock stronger than the command's own unless a governed column was renamed (or a
//! trigger's column dependencies are missing). Each command is tried both ways: with a writer's
//! transaction open, and with the command's transaction open while a writer writes; each side
//! has lock_timeout = 2s, so a wait fails the test with 55P03.
use stage_norm_client_tests::*;

const COMMANDS: [&str; 4] = [
    "ALTER TABLE lk VALIDATE CONSTRAINT lk_check",
    "ALTER TABLE lk ALTER COLUMN stage SET STATISTICS 200",
    "ALTER TABLE lk SET (fillfactor = 90)",
    "ALTER TABLE lk CLUSTER ON lk_pkey",
];

fn setup(db: &str) -> postgres::Client {
    let mut c = fresh_db(db);
    c.batch_execute(
        "CREATE TABLE lk (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('lk', 'stage');
         INSERT INTO lk SELECT g, 'seed' FROM generate_series(1, 100) g;
         ALTER TABLE lk ADD CONSTRAINT lk_check CHECK (stage_norm.is_canonical_stage(stage)) NOT VALID;",
    )
    .unwrap();
    c
}

#[test]
fn ddl_beside_a_writer_does_not_wait() {
    let db = "sn_locks_writer_first";
    let _admin = setup(db);
    for (i, cmd) in COMMANDS.iter().enumerate() {
        let mut writer = connect(db);
        let mut ddl = connect(db);
        writer.batch_execute("BEGIN").unwrap();
        writer.execute("INSERT INTO lk VALUES ($1, 'Series A')", &[&(1000 + i as i32)]).unwrap();
        ddl.batch_execute("SET lock_timeout = '2s'").unwrap();
        let started = std::time::Instant::now();
        ddl.batch_execute(cmd).unwrap_or_else(|e| panic!("{cmd} waited for an open INSERT: {e}"));
        assert!(started.elapsed().as_secs_f64() < 2.0, "{cmd}");
        writer.batch_execute("COMMIT").unwrap();
    }
}

#[test]
fn a_writer_beside_open_ddl_does_not_wait() {
    let db = "sn_locks_ddl_first";
    let _admin = setup(db);
    for (i, cmd) in COMMANDS.iter().enumerate() {
        let mut writer = connect(db);
        let mut ddl = connect(db);
        ddl.batch_execute("BEGIN").unwrap();
        ddl.batch_execute(cmd).unwrap();
        writer.batch_execute("SET lock_timeout = '2s'").unwrap();
        let id = 2000 + 10 * i as i32;
        writer
            .execute("INSERT INTO lk VALUES ($1, 'Series A')", &[&id])
            .unwrap_or_else(|e| panic!("INSERT waited for an open {cmd}: {e}"));
        writer.execute("UPDATE lk SET stage = 'Seed Round' WHERE id = $1", &[&id]).unwrap();
        writer.execute("DELETE FROM lk WHERE id = $1", &[&id]).unwrap();
        ddl.batch_execute("COMMIT").unwrap();
    }
}

/// add_check's second step (VALIDATE CONSTRAINT, which docs/reference.md says lets writes go
/// on) with a writer's transaction open: it validates without waiting.
#[test]
fn add_check_validates_beside_a_writer() {
    let db = "sn_locks_add_check";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "CREATE TABLE ac (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('ac', 'stage');
             INSERT INTO ac SELECT g, 'seed' FROM generate_series(1, 100) g;
             CALL stage_norm.add_check('ac', 'stage', validate => false);",
        )
        .unwrap();
    let mut writer = connect(db);
    writer.batch_execute("BEGIN; INSERT INTO ac VALUES (1000, 'Series B')").unwrap();
    let mut dba = connect(db);
    dba.batch_execute("SET lock_timeout = '2s'").unwrap();
    dba.batch_execute("CALL stage_norm.add_check('ac', 'stage')")
        .unwrap_or_else(|e| panic!("add_check's VALIDATE waited for an open INSERT: {e}"));
    writer.batch_execute("COMMIT").unwrap();
    let valid: bool = admin
        .query_one("SELECT convalidated FROM pg_constraint WHERE conrelid = 'ac'::regclass AND contype = 'c'", &[])
        .unwrap()
        .get(0);
    assert!(valid);
}

/// A stage_norm trigger with no recorded column dependency (created where the event trigger does
/// not fire: session_replication_role = replica) is synced by any later DDL command, on any table.
/// That command must not wait for the writers of the trigger's table: the dependencies are
/// recorded only when the lock is free at once (found by the independent review of #27).
#[test]
fn ddl_on_another_table_does_not_wait_for_a_pending_trigger() {
    let db = "sn_locks_other_table";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "CREATE TABLE x (id int, s text); CREATE TABLE y (id int, s text);
             SET session_replication_role = replica;
             CREATE TRIGGER stage_norm_normalize BEFORE INSERT OR UPDATE ON x FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger('s');
             RESET session_replication_role;",
        )
        .unwrap();
    let mut writer = connect(db);
    writer.batch_execute("BEGIN; INSERT INTO x VALUES (1, 'Seed')").unwrap();
    let mut ddl = connect(db);
    ddl.batch_execute("SET lock_timeout = '2s'").unwrap();
    ddl.batch_execute("ALTER TABLE y ALTER COLUMN s SET STATISTICS 100")
        .unwrap_or_else(|e| panic!("an ALTER of y waited for x's writer: {e}"));
    writer.batch_execute("COMMIT").unwrap();
    // With x free, the next command records the trigger's dependency.
    ddl.batch_execute("ALTER TABLE y ALTER COLUMN s SET STATISTICS 200").unwrap();
    let deps: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_depend d JOIN pg_trigger t ON d.objid = t.oid
              WHERE d.classid = 'pg_trigger'::regclass AND t.tgrelid = 'x'::regclass AND d.refobjsubid > 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deps, 1);
}
