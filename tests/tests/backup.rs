//! Backup and restore (#19): a database that uses every feature, pg_dump'ed and restored into a
//! fresh database of a fresh cluster, in custom and plain formats; nothing is lost and
//! enforcement works afterwards. And what a restore does with rows that a stricter mode would
//! reject (docs/operations.md, "Backup and restore").
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use stage_norm_client_tests::*;
use std::path::PathBuf;
use std::process::Command;

/// A second throwaway cluster (initdb as postgres, stage_norm preloaded), stopped and removed
/// when dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("stage_norm_restore_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown").args(["postgres:", dir.to_str().unwrap()]).status();
        let port = free_port();
        let data = dir.join("data");
        let st = pg_program("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb");
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\nshared_preload_libraries = 'stage_norm'\nlc_messages = 'C'\n",
            dir.display()
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        let st = pg_program("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-l", dir.join("log").to_str().unwrap(), "-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "start the second cluster: {}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
        Cluster { dir, port }
    }

    fn connect(&self, db: &str) -> Client {
        Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port), NoTls).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_program("pg_ctl")
            .args(["-D", self.dir.join("data").to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every feature in one database.
fn build_source(c: &mut Client) {
    c.batch_execute(
        "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'growth');
         SELECT stage_norm.add_alias('angel round', 'pre-seed'), stage_norm.add_alias('expansion', 'growth');
         CREATE TABLE deals (id int PRIMARY KEY, stage text, mix jsonb, history text[]);
         SELECT stage_norm.attach('deals', 'stage', 'mix', 'history');
         SELECT stage_norm.set_table_mode('deals', 'warn');
         INSERT INTO deals SELECT i, (ARRAY['Series A ', 'angel round', 'expansion', 'mystery'])[1 + i % 4],
                                  '{\"Seed\": 0.5, \"series_a\": 0.5}', ARRAY['pre_seed', 'Series B']
           FROM generate_series(1, 400) i;
         CREATE TABLE legacy (id int PRIMARY KEY, stage text);
         INSERT INTO legacy SELECT i, (ARRAY['Series A ', 'seriesB', 'angel round', 'weird'])[1 + i % 4] FROM generate_series(1, 2000) i;",
    )
    .unwrap();
    // A migration with undo data, then a CHECK that the migrated column passes.
    c.batch_execute("CALL stage_norm.migrate('legacy', 'stage', batch_size => 500)").unwrap();
    c.batch_execute("UPDATE legacy SET stage = 'seed' WHERE stage = 'weird'").unwrap();
    c.batch_execute("CALL stage_norm.add_check('legacy', 'stage')").unwrap();
    c.batch_execute("CREATE TABLE strict_t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('strict_t', 'stage'); SELECT stage_norm.set_table_mode('strict_t', 'enforce')")
        .unwrap();
}

/// What must survive, as one comparable text per item.
fn snapshot(c: &mut Client) -> Vec<String> {
    let q = |c: &mut Client, sql: &str| -> String {
        c.query(sql, &[]).unwrap().iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()).collect::<Vec<_>>().join(";")
    };
    vec![
        q(c, "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"),
        q(c, "SELECT string_agg(alias || '=' || stage, ',' ORDER BY alias) FROM stage_norm.aliases"),
        q(c, "SELECT string_agg(tbl::text || '=' || mode, ',' ORDER BY tbl::text) FROM stage_norm.table_mode_settings"),
        q(c, "SELECT string_agg(table_name::text || ':' || columns::text, ',' ORDER BY 1) FROM stage_norm.table_modes"),
        q(c, "SELECT md5(string_agg(d::text, ',' ORDER BY id)) FROM deals d"),
        q(c, "SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM legacy l"),
        q(c, "SELECT string_agg(conname || ' valid=' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'legacy'::regclass AND contype = 'c'"),
        q(c, "SELECT string_agg(format('%s %s %s %s', run_id, status, rows_updated, rows_unknown), ',' ORDER BY run_id) FROM stage_norm.migration_runs"),
        q(c, "SELECT count(*)::text || ' undo rows, ' || coalesce(sum(cardinality(old_values)), 0) || ' values' FROM stage_norm.migration_undo"),
        q(c, "SELECT count(*)::text FROM stage_norm.migration_batches"),
    ]
}

fn dump(src: &str, flag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("stage_norm_backup_{}{flag}.dump", std::process::id()));
    let st = Command::new("pg_dump").args(cli_args()).args([flag, "-f"]).arg(&path).arg(src).status().unwrap();
    assert!(st.success(), "pg_dump {flag}");
    path
}

fn restore(to: &Cluster, db: &str, path: &PathBuf, plain: bool, extra_env: Option<(&str, &str)>) -> std::process::ExitStatus {
    let mut admin = to.connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let port = to.port.to_string();
    let mut cmd = if plain {
        let mut c = Command::new("psql");
        c.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"]);
        c
    } else {
        let mut c = Command::new("pg_restore");
        c.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--exit-on-error", "-d", db]);
        c
    };
    if let Some((k, v)) = extra_env {
        cmd.env(k, v);
    }
    cmd.arg(path).status().unwrap()
}

#[test]
fn every_feature_survives_dump_and_restore_into_a_fresh_cluster() {
    let mut src = fresh_db("sn_backup_src");
    build_source(&mut src);
    let before = snapshot(&mut src);
    assert!(before[8].starts_with('4'), "the migration kept undo rows: {}", before[8]);
    let other = Cluster::start();
    for (flag, plain) in [("-Fc", false), ("-Fp", true)] {
        let path = dump("sn_backup_src", flag);
        let db = if plain { "restored_plain" } else { "restored_custom" };
        // Under the strictest server setting: a restore loads table data before it creates the
        // triggers (post-data), so nothing written under warn is re-checked.
        let st = restore(&other, db, &path, plain, Some(("PGOPTIONS", "-c stage_norm.mode=enforce")));
        assert!(st.success(), "restore {flag} into a fresh cluster");
        let mut r = other.connect(db);
        let after = snapshot(&mut r);
        assert_eq!(before, after, "{flag}: what the restore lost or changed");
        // Enforcement works after the restore: the override, the custom set, the aliases.
        let e = r.execute("INSERT INTO strict_t VALUES (1, 'Serie Z')", &[]).unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "{flag}: {e}");
        r.execute("INSERT INTO strict_t VALUES (2, 'Expansion')", &[]).unwrap();
        r.execute("INSERT INTO deals VALUES (1000, 'Serie Z', '{\"growth\": 1}', '{}')", &[]).unwrap(); // warn
        let got: Vec<String> = r
            .query("SELECT stage FROM strict_t UNION ALL SELECT stage FROM deals WHERE id = 1000", &[])
            .unwrap()
            .iter()
            .map(|x| x.get(0))
            .collect();
        assert_eq!(got, ["growth", "Serie Z"], "{flag}");
        let e = r.execute("INSERT INTO legacy VALUES (9999, 'mystery')", &[]).unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "{flag}: the restored CHECK: {e}");
        // The migration can still be rolled back from the restored undo data.
        let run: i64 = r.query_one("SELECT max(run_id) FROM stage_norm.migration_runs", &[]).unwrap().get(0);
        // (the CHECK added after the migration would refuse the old values: drop it first)
        r.batch_execute(
            "DO $$ DECLARE c text; BEGIN SELECT conname INTO c FROM pg_constraint WHERE conrelid = 'legacy'::regclass AND contype = 'c'; \
             EXECUTE format('ALTER TABLE legacy DROP CONSTRAINT %I', c); END $$",
        )
        .unwrap();
        r.batch_execute(&format!("CALL stage_norm.rollback_migration({run})")).unwrap();
        let back: i64 = r.query_one("SELECT count(*) FROM legacy WHERE stage IN ('Series A ', 'seriesB', 'angel round')", &[]).unwrap().get(0);
        assert_eq!(back, 1500, "{flag}: rollback_migration after the restore");
        // The counters are the cluster's shared memory, not data: the fresh cluster counts only
        // what was written there since (the two INSERTs into deals and strict_t above).
        let n: i64 = r
            .query_one("SELECT coalesce(sum(count), 0)::bigint FROM stage_norm.stats WHERE datname = current_database() AND table_name = 'deals'", &[])
            .unwrap()
            .get(0);
        assert!(n <= 3, "{flag}: counters are not restored ({n})");
        let _ = std::fs::remove_file(&path);
    }
    drop(src);
    connect("postgres").batch_execute("DROP DATABASE sn_backup_src WITH (FORCE)").unwrap();
}

/// A data-only restore into a database whose schema (and triggers) already exist does fire the
/// triggers: rows stored under warn would be rejected under enforce. The documented way: the
/// restore session's ceiling at shadow (PGOPTIONS, a superuser restore), or --disable-triggers.
#[test]
fn data_only_restore_under_enforce() {
    let mut src = fresh_db("sn_dataonly_src");
    src.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('t', 'stage');
         SET stage_norm.mode = 'warn'; INSERT INTO t VALUES (1, 'Serie Z'), (2, 'Series A ');",
    )
    .unwrap();
    let data = std::env::temp_dir().join(format!("stage_norm_dataonly_{}.dump", std::process::id()));
    let st = Command::new("pg_dump").args(cli_args()).args(["-Fc", "--data-only", "-t", "t", "-f"]).arg(&data).arg("sn_dataonly_src").status().unwrap();
    assert!(st.success());
    let mut dst = fresh_db("sn_dataonly_dst");
    dst.batch_execute("CREATE TABLE t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('t', 'stage')").unwrap();
    let run = |dst: &mut Client, env: &str, extra: &[&str]| {
        dst.batch_execute("TRUNCATE t").unwrap();
        Command::new("pg_restore")
            .args(cli_args())
            .args(["--exit-on-error", "--data-only", "-d", "sn_dataonly_dst"])
            .args(extra)
            .env("PGOPTIONS", env)
            .arg(&data)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    assert!(!run(&mut dst, "-c stage_norm.mode=enforce", &[]).success(), "a data-only restore under enforce rejects the row stored under warn");
    assert!(run(&mut dst, "-c stage_norm.mode=enforce -c stage_norm.max_mode=shadow", &[]).success(), "with the ceiling at shadow it loads");
    let rows: Vec<String> = dst.query("SELECT stage FROM t ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, ["Serie Z", "series-a"], "shadow stores rows exactly as dumped");
    assert!(run(&mut dst, "-c stage_norm.mode=enforce", &["--disable-triggers"]).success(), "or --disable-triggers (superuser)");
    let _ = std::fs::remove_file(&data);
    drop((src, dst));
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE sn_dataonly_src WITH (FORCE)").unwrap();
    admin.batch_execute("DROP DATABASE sn_dataonly_dst WITH (FORCE)").unwrap();
}
