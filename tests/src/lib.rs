//! Helpers for the client tests: they talk to the throwaway cluster that `make test` starts
//! (scripts/with-cluster.sh exports STAGE_NORM_DSN). Without it they fail, loudly.
use postgres::{Client, NoTls};

/// The cluster's connection string, e.g. `host=127.0.0.1 port=55432 user=postgres dbname=postgres`.
pub fn dsn() -> String {
    std::env::var("STAGE_NORM_DSN").expect(
        "STAGE_NORM_DSN is not set: run these tests through `make test` (or scripts/with-cluster.sh)",
    )
}

/// The DSN with another database name.
pub fn dsn_for(db: &str) -> String {
    let dsn = dsn();
    let base: Vec<&str> = dsn.split_whitespace().filter(|kv| !kv.starts_with("dbname=")).collect();
    format!("{} dbname={db}", base.join(" "))
}

pub fn connect(db: &str) -> Client {
    Client::connect(&dsn_for(db), NoTls).unwrap_or_else(|e| panic!("connect to {db}: {e}"))
}

/// Drops and creates database `db` with the extension installed; returns a connection to it.
pub fn fresh_db(db: &str) -> Client {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut c = connect(db);
    c.batch_execute("CREATE EXTENSION stage_norm").unwrap();
    c
}

/// `stage_norm.normalize_stage(label)` on `c`.
pub fn normalize(c: &mut Client, label: &str) -> Option<String> {
    c.query_one("SELECT stage_norm.normalize_stage($1)", &[&label]).unwrap().get(0)
}

/// Host, port and user from the DSN, as arguments for pg_dump/pg_restore/psql.
pub fn cli_args() -> Vec<String> {
    let d = dsn();
    let get = |k: &str| {
        d.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
            .unwrap_or_default()
    };
    vec![format!("--host={}", get("host")), format!("--port={}", get("port")), format!("--username={}", get("user"))]
}
