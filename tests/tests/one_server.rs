//! What one server offers before Citus (#19, docs/scaling.md "One server first"): PgBouncer in
//! transaction pooling mode between the client and the cluster, parallel query, and partitions
//! that pg_partman creates after the trigger was attached to the parent.
use postgres::error::SqlState;
use postgres::{Client, NoTls, SimpleQueryMessage};
use stage_norm_client_tests::*;
use std::io::Write;
use std::process::{Child, Command, Stdio};

/// A pgbouncer (Debian's) on a free loopback port, transaction pooling, trust auth, in front of
/// the test cluster; stopped when dropped. It refuses to run as root: run as postgres.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dsn_value(key: &str) -> String {
    dsn().split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned)).unwrap()
}

fn start_bouncer(db: &str) -> Bouncer {
    let dir = std::env::temp_dir().join(format!("stage_norm_bouncer_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let ini = dir.join("pgbouncer.ini");
    let users = dir.join("users.txt");
    std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
    let mut f = std::fs::File::create(&ini).unwrap();
    writeln!(
        f,
        "[databases]\n{db} = host={} port={} dbname={db}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
         unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\ndefault_pool_size = 4\n\
         max_client_conn = 50\nlogfile = {}\npidfile = {}\nadmin_users = postgres\n",
        dsn_value("host"),
        dsn_value("port"),
        users.display(),
        dir.join("pgbouncer.log").display(),
        dir.join("pgbouncer.pid").display(),
    )
    .unwrap();
    drop(f);
    let _ = Command::new("chown").args(["-R", "postgres:", dir.to_str().unwrap()]).status();
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].into_iter().find(|p| std::path::Path::new(p).exists());
    let bin = bin.expect("pgbouncer is not installed (scripts/bootstrap.sh installs Debian's pgbouncer)");
    // As postgres directly (not through runuser, whose death would leave pgbouncer running).
    let mut cmd = Command::new(bin);
    if is_root() {
        use std::os::unix::process::CommandExt;
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        cmd.gid(id("-g")).uid(id("-u"));
    }
    let child = cmd.arg(ini.to_str().unwrap()).current_dir("/").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until it accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Bouncer { child, port, _dir: TempDir(dir) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("pgbouncer did not start: {}", std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default());
}

fn through(b: &Bouncer, db: &str) -> Client {
    Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", b.port), NoTls).unwrap()
}

/// The first value of a simple query (the simple protocol only: no prepared statements, which
/// transaction pooling does not keep across transactions).
fn value(c: &mut Client, sql: &str) -> Option<String> {
    c.simple_query(sql).unwrap().into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
        _ => None,
    })?
}

#[test]
fn pgbouncer_transaction_pooling() {
    let mut direct = fresh_db("sn_bouncer");
    direct
        .batch_execute(
            "CREATE TABLE pc (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('pc', 'stage');
             CREATE TABLE other (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('other', 'stage');
             ALTER DATABASE sn_bouncer SET stage_norm.mode = 'enforce';",
        )
        .unwrap();
    let b = start_bouncer("sn_bouncer");
    // Several clients share the pool of 4 server connections.
    let mut clients: Vec<Client> = (0..6).map(|_| through(&b, "sn_bouncer")).collect();

    // Enforcement and the error fields come through the pooler intact.
    let e = clients[0].batch_execute("INSERT INTO pc VALUES (1, 'Serie Z')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!((db.schema(), db.table(), db.column()), (Some("public"), Some("pc"), Some("stage")));
    assert!(db.message().contains("\"Serie Z\""), "{}", db.message());
    assert!(db.hint().is_some_and(|h| h.contains("add_alias")), "{db:?}");
    clients[1].batch_execute("INSERT INTO pc VALUES (2, 'pre_seed')").unwrap();
    assert_eq!(value(&mut clients[2], "SELECT stage FROM pc WHERE id = 2").as_deref(), Some("pre-seed"));

    // A per-table override set through one pooled client applies to all of them.
    clients[3].batch_execute("SELECT stage_norm.set_table_mode('pc', 'warn')").unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        c.batch_execute(&format!("INSERT INTO pc VALUES ({}, 'odd {i}')", 100 + i)).unwrap();
        assert!(c.batch_execute(&format!("INSERT INTO other VALUES ({i}, 'odd')")).is_err(), "other still enforces");
    }
    // The ceiling (ALTER SYSTEM + reload on a direct connection) reaches every pooled server
    // connection at its next statement.
    direct.batch_execute("ALTER SYSTEM SET stage_norm.max_mode = 'warn'").unwrap();
    direct.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (i, c) in clients.iter_mut().enumerate() {
        c.batch_execute(&format!("INSERT INTO other VALUES ({i}, 'odd')")).unwrap();
    }
    direct.batch_execute("ALTER SYSTEM RESET stage_norm.max_mode").unwrap();
    direct.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    // A session SET does not belong to the client under transaction pooling: it stays on the
    // server connection that ran it, which other clients get next. What to use instead: SET
    // LOCAL inside the transaction (it ends with the transaction, on the same connection).
    let mut a = through(&b, "sn_bouncer");
    a.batch_execute("BEGIN; SET LOCAL stage_norm.mode = 'warn'; INSERT INTO other VALUES (50, 'odd'); COMMIT").unwrap();
    let e = a.batch_execute("INSERT INTO other VALUES (51, 'odd')").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "SET LOCAL ended with its transaction: {e}");
    // The session SET leaks to whichever client gets that server connection next: show it,
    // so the documentation's warning stays true.
    let mut leaks = 0;
    a.batch_execute("SET stage_norm.mode = 'off'").unwrap();
    for c in clients.iter_mut() {
        if value(c, "SELECT current_setting('stage_norm.mode')").as_deref() == Some("off") {
            leaks += 1;
        }
    }
    assert!(leaks > 0, "a session SET through transaction pooling was expected to reach another client");
    drop(clients);
    drop(a);
    drop(b);
    direct.batch_execute("RESET ALL").unwrap();
    drop(direct);
    connect("postgres").batch_execute("DROP DATABASE sn_bouncer WITH (FORCE)").unwrap();
}

#[test]
fn normalize_stage_in_parallel_workers() {
    let mut c = fresh_db("sn_parallel");
    c.batch_execute(
        "CREATE TABLE big (id int, stage text);
         INSERT INTO big SELECT i, (ARRAY['Series A ', 'pre_seed', 'seriesB', 'angel round'])[1 + i % 4] FROM generate_series(1, 400000) i;
         SELECT stage_norm.add_alias('angel round', 'pre-seed');
         ANALYZE big;",
    )
    .unwrap();
    let setup = "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
                 SET min_parallel_table_scan_size = 0;";
    c.batch_execute(setup).unwrap();
    let q = "SELECT stage_norm.normalize_stage(stage) AS s, count(*) FROM big GROUP BY 1 ORDER BY 1";
    let plan: Vec<String> = c
        .query(&format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {q}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Gather") && plan.contains("Workers Launched: 2"), "no parallel plan:\n{plan}");
    let rows: Vec<(Option<String>, i64)> = c.query(q, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    // The aliases reach the workers: every row is classified, none NULL.
    assert_eq!(
        rows,
        [(Some("pre-seed".into()), 200000), (Some("series-a".into()), 100000), (Some("series-b".into()), 100000)]
    );
    drop(c);
    connect("postgres").batch_execute("DROP DATABASE sn_parallel WITH (FORCE)").unwrap();
}

#[test]
fn partitions_created_later_by_pg_partman() {
    if !has_debian_extras("pg_partman") {
        return;
    }
    let mut c = fresh_db("sn_partman");
    let ok = c.batch_execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman");
    ok.unwrap_or_else(|e| panic!("pg_partman (Debian's postgresql-15-partman, scripts/bootstrap.sh): {e}"));
    c.batch_execute(
        "CREATE TABLE deals (id bigint NOT NULL, stage text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
         SELECT partman.create_parent('public.deals', 'id', 'native', '1000', p_premake := 2, p_start_partition := '0');
         SELECT stage_norm.attach('deals', 'stage');
         SET stage_norm.mode = 'enforce';",
    )
    .unwrap();
    let before: i64 = c.query_one("SELECT count(*) FROM pg_partition_tree('deals') WHERE isleaf", &[]).unwrap().get(0);
    // Rows beyond the premade partitions land in the default; run_maintenance creates the
    // partitions ahead of the newest data (pg_partman 4: by the highest id present).
    c.batch_execute("INSERT INTO deals VALUES (2500, 'pre_seed')").unwrap();
    c.batch_execute("CALL partman.partition_data_proc('public.deals'); SELECT partman.run_maintenance('public.deals')").unwrap();
    let after: i64 = c.query_one("SELECT count(*) FROM pg_partition_tree('deals') WHERE isleaf", &[]).unwrap().get(0);
    assert!(after > before, "pg_partman created no partition ({before} -> {after})");
    // A partition pg_partman created after attach: governed through the parent's trigger.
    let newest: String = c
        .query_one("SELECT relid::regclass::text FROM pg_partition_tree('deals') WHERE isleaf ORDER BY relid DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    let id: i64 = c
        .query_one(
            &format!("SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''?(\\d+)'))[1]::bigint FROM pg_class c WHERE c.oid = '{newest}'::regclass"),
            &[],
        )
        .unwrap()
        .get(0);
    c.execute(&format!("INSERT INTO deals VALUES ({id}, 'seriesB')"), &[]).unwrap();
    let (part, stage): (String, String) = c
        .query_one(&format!("SELECT tableoid::regclass::text, stage FROM deals WHERE id = {id}"), &[])
        .unwrap()
        .pipe(|r| (r.get(0), r.get(1)));
    assert_eq!((part.as_str(), stage.as_str()), (newest.as_str(), "series-b"));
    let e = c.execute(&format!("INSERT INTO deals VALUES ({}, 'Serie Z')", id + 1), &[]).unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::CHECK_VIOLATION);
    assert!(db.message().contains("of table \"deals\" (partition"), "{}", db.message());
    // The moved row was normalized on its way through partition_data_proc as well.
    let moved: String = c.query_one("SELECT stage FROM deals WHERE id = 2500", &[]).unwrap().get(0);
    assert_eq!(moved, "pre-seed");
    drop(c);
    connect("postgres").batch_execute("DROP DATABASE sn_partman WITH (FORCE)").unwrap();
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
