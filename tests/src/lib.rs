//! Helpers for the client tests: they talk to the throwaway cluster that `make test` starts
//! (scripts/with-cluster.sh exports STAGE_NORM_DSN). Without it they fail, loudly.
use postgres::{Client, NoTls};

/// The cluster's connection string, e.g. `host=127.0.0.1 port=55432 user=postgres dbname=postgres`.
pub fn dsn() -> String {
    std::env::var("STAGE_NORM_DSN").expect(
        "STAGE_NORM_DSN is not set: run these tests through `make test` (or scripts/with-cluster.sh)",
    )
}

/// The test cluster's server log as text. The log is written in each database's encoding (an
/// EUC_JP database's statements are EUC_JP bytes: tests/encodings.rs), so it is read lossily.
pub fn server_log() -> String {
    let path = std::env::var("STAGE_NORM_CLUSTER_LOG").expect("STAGE_NORM_CLUSTER_LOG: run through scripts/with-cluster.sh");
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
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

/// How `dump_and_restore` carries a database.
#[derive(Clone, Copy, Debug)]
pub enum DumpFormat {
    /// `pg_dump -Fc`, then `pg_restore --exit-on-error`.
    Custom,
    /// `pg_dump -Fp`, then `psql -v ON_ERROR_STOP=1 -f`.
    Plain,
}

/// Dumps database `src` and restores it into a new database `dst` (dropped first); panics if
/// either step fails. Returns a connection to `dst`.
pub fn dump_and_restore(src: &str, dst: &str, format: DumpFormat) -> Client {
    use std::process::Command;
    let dump = std::env::temp_dir().join(format!("stage_norm_{src}_{}_{format:?}.dump", std::process::id()));
    let flag = match format {
        DumpFormat::Custom => "-Fc",
        DumpFormat::Plain => "-Fp",
    };
    let st = Command::new("pg_dump").args(cli_args()).args([flag, "-f"]).arg(&dump).arg(src).status().unwrap();
    assert!(st.success(), "pg_dump {flag} {src} failed");
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {dst} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {dst}")).unwrap();
    let st = match format {
        DumpFormat::Custom => {
            Command::new("pg_restore").args(cli_args()).args(["--exit-on-error", "-d", dst]).arg(&dump).status().unwrap()
        }
        DumpFormat::Plain => Command::new("psql")
            .args(cli_args())
            .args(["-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1", "-d", dst, "-f"])
            .arg(&dump)
            .status()
            .unwrap(),
    };
    assert!(st.success(), "restore of {src} ({format:?}) into {dst} failed");
    let _ = std::fs::remove_file(&dump);
    connect(dst)
}

/// A TCP port on 127.0.0.1 that is free now (the kernel's choice), for a second server the test
/// starts (a standby, a cluster to restore into, pgbouncer).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The directory of the server's programs under test (15's unless STAGE_NORM_PG_BIN says).
pub fn pg_bin() -> String {
    std::env::var("STAGE_NORM_PG_BIN").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into())
}

/// The major version under test (STAGE_NORM_PG, set by `make`; 15 when unset).
pub fn pg_major() -> u32 {
    std::env::var("STAGE_NORM_PG").ok().and_then(|v| v.parse().ok()).unwrap_or(15)
}

/// Whether a test that needs a third-party extension Debian 12 packages for 15 only (pg_cron,
/// pg_partman, plpgsql_check) runs: always on 15, where its absence fails the test; on 17 and 18
/// it is skipped, saying so (docs/testing.md).
pub fn has_debian_extras(what: &str) -> bool {
    if pg_major() == 15 {
        return true;
    }
    println!("skipped on PostgreSQL {}: {what} is packaged by Debian 12 for PostgreSQL 15 only", pg_major());
    false
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// True when the tests run as root (then PostgreSQL's programs run as postgres, via runuser).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc_geteuid() == 0 }
}

/// A program of the server under test (`pg_ctl`, `pg_basebackup`, ...; STAGE_NORM_PG_BIN, set by
/// `make` and scripts/with-cluster.sh, else 15's) to run as the postgres user (through runuser
/// when we are root), from `/`.
pub fn pg_program(name: &str) -> std::process::Command {
    let path = format!("{}/{name}", pg_bin());
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        std::process::Command::new(path)
    };
    cmd.current_dir("/");
    cmd
}

/// Runs `pg_ctl` on the throwaway cluster's data directory (STAGE_NORM_PGDATA) as its owner,
/// with `args` after `-D <dir>` (`start` gets the cluster's log file); panics on failure.
pub fn pg_ctl(args: &[&str]) {
    let pgdata = std::env::var("STAGE_NORM_PGDATA").expect("STAGE_NORM_PGDATA (scripts/with-cluster.sh)");
    let log = std::env::var("STAGE_NORM_CLUSTER_LOG").expect("STAGE_NORM_CLUSTER_LOG (scripts/with-cluster.sh)");
    let mut cmd = pg_program("pg_ctl");
    cmd.args(["-D", &pgdata]);
    if args.contains(&"start") || args.contains(&"restart") {
        cmd.args(["-l", &log]);
    }
    let st = cmd.args(args).status().unwrap();
    assert!(st.success(), "pg_ctl {args:?}");
}
