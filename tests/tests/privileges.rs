//! The permission matrix through a real client: an ordinary role cannot weaken enforcement by
//! any route; a granted role and a stage_norm_admin member can.
use stage_norm_client_tests::*;

fn code(r: Result<u64, postgres::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string()),
    }
}

#[test]
fn ordinary_roles_cannot_weaken_enforcement() {
    let mut admin = fresh_db("sn_priv");
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sn_c_app') THEN CREATE ROLE sn_c_app LOGIN; END IF;
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sn_c_ops') THEN CREATE ROLE sn_c_ops LOGIN; END IF;
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stage_norm_admin') THEN CREATE ROLE stage_norm_admin NOLOGIN; END IF;
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sn_c_admin') THEN CREATE ROLE sn_c_admin LOGIN IN ROLE stage_norm_admin; END IF;
             END $$;
             CREATE TABLE guarded (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('guarded', 'stage');
             GRANT INSERT, SELECT, UPDATE ON guarded TO sn_c_app, sn_c_ops;
             ALTER DATABASE sn_priv SET stage_norm.mode = enforce;",
        )
        .unwrap();
    let as_role = |role: &str| {
        let dsn = format!("{} user={role}", dsn_for("sn_priv"));
        postgres::Client::connect(&dsn, postgres::NoTls).unwrap()
    };

    let mut app = as_role("sn_c_app");
    // A placeholder set before the library is loaded is discarded at load time; with the
    // library preloaded (make test's client cluster) there is no placeholder: 42501 at once.
    let preload: String = admin.query_one("SHOW shared_preload_libraries", &[]).unwrap().get(0);
    if preload.contains("stage_norm") {
        assert_eq!(code(app.execute("SET stage_norm.mode = off", &[])), "42501");
    } else {
        app.batch_execute("SET stage_norm.mode = off").unwrap();
    }
    assert_eq!(code(app.execute("INSERT INTO guarded VALUES (1, 'Nope')", &[])), "23514");
    // Every route to weaken it is refused with 42501.
    for sql in [
        "SET stage_norm.mode = off",
        "SET stage_norm.max_mode = warn",
        "SET stage_norm.enforce_percent = 0",
        "SELECT set_config('stage_norm.mode', 'off', false)",
        "ALTER ROLE sn_c_app SET stage_norm.mode = off",
        "SELECT stage_norm.set_table_mode('guarded', 'off')",
        "INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('guarded', 'off')",
        "ALTER TABLE guarded DISABLE TRIGGER stage_norm_normalize",
        "SELECT stage_norm.detach('guarded')",
    ] {
        assert_eq!(code(app.execute(sql, &[])), "42501", "{sql}");
    }
    app.batch_execute("BEGIN").unwrap();
    assert_eq!(code(app.execute("SET LOCAL stage_norm.mode = off", &[])), "42501");
    app.batch_execute("ROLLBACK").unwrap();
    assert_eq!(code(app.execute("INSERT INTO guarded VALUES (1, 'Nope')", &[])), "23514");

    // GRANT SET ON PARAMETER delegates the setting.
    admin.batch_execute("GRANT SET ON PARAMETER stage_norm.mode TO sn_c_ops").unwrap();
    let mut ops = as_role("sn_c_ops");
    assert_eq!(code(ops.execute("SET stage_norm.mode = warn", &[])), "ok");
    assert_eq!(code(ops.execute("INSERT INTO guarded VALUES (2, 'Nope')", &[])), "ok");
    assert_eq!(code(ops.execute("SET stage_norm.max_mode = off", &[])), "42501");

    // A stage_norm_admin member may set any table's override, and every session sees it.
    let mut member = as_role("sn_c_admin");
    assert_eq!(code(member.execute("SELECT stage_norm.set_table_mode('guarded', 'warn')", &[])), "ok");
    assert_eq!(code(app.execute("INSERT INTO guarded VALUES (3, 'Nope')", &[])), "ok");

    drop((app, ops, member));
    admin
        .batch_execute(
            "ALTER DATABASE sn_priv RESET stage_norm.mode;
             REVOKE SET ON PARAMETER stage_norm.mode FROM sn_c_ops;
             DROP TABLE guarded;
             DELETE FROM stage_norm.table_mode_settings;",
        )
        .unwrap();
    drop(admin);
    let mut postgres_db = connect("postgres");
    postgres_db.batch_execute("DROP DATABASE sn_priv WITH (FORCE)").unwrap();
    postgres_db.batch_execute("DROP ROLE sn_c_app, sn_c_ops, sn_c_admin").unwrap();
}
