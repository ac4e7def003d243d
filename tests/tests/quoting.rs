//! Dynamic SQL quoting: every routine that takes a table or a column, run on tables and columns
//! whose names hold single and double quotes, spaces, upper case, dots, semicolons, `%`,
//! backslashes and SQL-looking text (`a'); DROP TABLE victim; --`), in a schema with such a
//! name too. Each must do its work (rows rewritten, restored, counted), refuse with the right
//! SQLSTATE naming the object as it is (message and error fields), never fail with a syntax
//! error or an undefined object of its own making, and leave the table `victim` alone.
use std::sync::{Arc, Mutex};

use postgres::error::DbError;
use postgres::{Client, NoTls};
use stage_norm_client_tests::{connect, dsn_for, fresh_db, server_log};

const SCHEMA: &str = "Sch \"q\". ;x";
const PK: &str = "I\"d. k";
const K2: &str = "k;2 'x' \"y\"";
const TEN: &str = "Fund \"F\"; 'x'";
const TXT: &str = "St'age \"x\"; %I \\n.Up";
const JS: &str = "Dist.'j\"; --";
const ARR: &str = "Arr %s\\ \"a\" ;";
const INJ: &str = "b'); DROP TABLE victim; --";
/// 50 bytes: `<col>_stage_canonical` would exceed 63, so add_check names it `stage_canonical_<attnum>`.
const LONG: &str = "Long 'col' \"name\"; with.dots %s \\ and more text x";
/// A varchar(9) column (the longest default stage, series-c+, has 9 characters).
const NARROW: &str = "V \"9\"; 'n'";
/// Domains in SCHEMA: the type of LONG (over text), and of K2 and TEN (the key and tenant
/// types migrate casts its text forms back to).
const DOM_TEXT: &str = "Stage \"Dom\"; 'x'";
const DOM_KEY: &str = "Key.\"D\" %s; \\";
const RENAMED: &str = "Renamed \"R\" 'r'; .% \\";

/// Every governed column, in attach order.
const GOVERNED: [&str; 5] = [TXT, JS, ARR, INJ, LONG];

const LABELS: [Option<&str>; 7] =
    [Some("Series A "), Some("pre_seed"), Some("seed"), Some("growth"), None, Some("seriesB"), Some("SERIES C+")];
const DISTS: [Option<&str>; 4] = [Some(r#"{"pre_seed": 0.5, "Series A": 0.5}"#), Some(r#"{"seed": 1}"#), Some(r#"{"bogus": 1}"#), None];
const ARRAYS: [Option<&str>; 4] = [Some("{\"Series A\",seed}"), Some("{seed}"), Some("{seed,growth}"), None];
const ROWS: i64 = 21;

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt_lit(s: Option<&str>) -> String {
    s.map(lit).unwrap_or_else(|| "NULL".into())
}

/// The qualified, quoted name of a table of SCHEMA.
fn qual(table: &str) -> String {
    format!("{}.{}", ident(SCHEMA), ident(table))
}

/// The table as users pass it: a text literal cast to regclass.
fn reg(table: &str) -> String {
    format!("{}::regclass", lit(&qual(table)))
}

fn ok(c: &mut Client, sql: &str) {
    if let Err(e) = c.batch_execute(sql) {
        panic!("{sql}\n  failed: {e} {:?}", e.as_db_error());
    }
}

/// Runs `sql`, which must fail with `code`; returns the error. Never a quoting error.
fn fails(c: &mut Client, sql: &str, code: &str) -> DbError {
    match c.batch_execute(sql) {
        Ok(()) => panic!("{sql}\n  succeeded, expected {code}"),
        Err(e) => {
            let db = e.as_db_error().cloned().unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
            assert_eq!(db.code().code(), code, "{sql}\n  failed with {db:?}");
            db
        }
    }
}

fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    match c.query_one(sql, &[]) {
        Ok(r) => r.get(0),
        Err(e) => panic!("{sql}\n  failed: {e} {:?}", e.as_db_error()),
    }
}

fn victim_alive(c: &mut Client) {
    let n: i64 = one(c, "SELECT count(*) FROM public.victim");
    assert_eq!(n, 1, "victim lost its row");
}

struct Table {
    name: &'static str,
    /// (leaf, range) for a partitioned table: leaf names and FOR VALUES clauses.
    parts: &'static [(&'static str, &'static str)],
    composite: bool,
    narrow: bool,
}

const TABLES: [Table; 4] = [
    Table { name: "Weird \"T\"", parts: &[], composite: false, narrow: true },
    Table { name: "a'); DROP TABLE victim; --", parts: &[], composite: false, narrow: false },
    Table { name: "Mixed.Case; 50% \\x 'q'", parts: &[], composite: true, narrow: false },
    Table {
        name: "Part \"P\"; x",
        parts: &[("p'1 %", "FROM (0) TO (11)"), ("P.2 \\; \"z\"", "FROM (11) TO (MAXVALUE)")],
        composite: false,
        narrow: false,
    },
];

impl Table {
    /// The leaf that holds row `id`.
    fn leaf(&self, id: i32) -> &'static str {
        match self.parts {
            [] => self.name,
            [(p1, _), (p2, _)] => {
                if id < 11 {
                    p1
                } else {
                    p2
                }
            }
            _ => unreachable!(),
        }
    }

    fn create(&self, c: &mut Client) {
        let key = if self.composite { format!("{} {} NOT NULL, ", ident(K2), qual(DOM_KEY)) } else { String::new() };
        let pk = if self.composite { format!("{}, {}", ident(PK), ident(K2)) } else { ident(PK) };
        let narrow = if self.narrow { format!(", {} varchar(9)", ident(NARROW)) } else { String::new() };
        let part = if self.parts.is_empty() { String::new() } else { format!(" PARTITION BY RANGE ({})", ident(PK)) };
        ok(
            c,
            &format!(
                "CREATE TABLE {} ({} int NOT NULL, {key}{} {}, {} text, {} jsonb, {} text[], {} text, {} {}{narrow}, PRIMARY KEY ({pk})){part}",
                qual(self.name),
                ident(PK),
                ident(TEN),
                qual(DOM_KEY),
                ident(TXT),
                ident(JS),
                ident(ARR),
                ident(INJ),
                ident(LONG),
                qual(DOM_TEXT),
            ),
        );
        for (leaf, range) in self.parts {
            ok(c, &format!("CREATE TABLE {} PARTITION OF {} FOR VALUES {range}", qual(leaf), qual(self.name)));
        }
        let mut values = Vec::new();
        for i in 1..=ROWS {
            let l = LABELS[(i as usize - 1) % LABELS.len()];
            let d = DISTS[(i as usize - 1) % DISTS.len()];
            let a = ARRAYS[(i as usize - 1) % ARRAYS.len()];
            let tenant = if i % 7 == 0 { None } else { Some(format!("f'{}\"; \\", i % 3)) };
            let k2 = if self.composite { format!("{}, ", lit(&format!("k'{i}\" ;"))) } else { String::new() };
            let narrow = if self.narrow { format!(", {}", opt_lit(l.filter(|s| s.len() <= 9))) } else { String::new() };
            values.push(format!(
                "({i}, {k2}{}, {}, {}, {}, {}, {}{narrow})",
                opt_lit(tenant.as_deref()),
                opt_lit(l),
                opt_lit(d),
                opt_lit(a),
                opt_lit(l),
                opt_lit(l)
            ));
        }
        let cols = |v: &[&str]| v.iter().map(|s| ident(s)).collect::<Vec<_>>().join(", ");
        let mut names = vec![PK];
        if self.composite {
            names.push(K2);
        }
        names.extend([TEN, TXT, JS, ARR, INJ, LONG]);
        if self.narrow {
            names.push(NARROW);
        }
        ok(c, &format!("INSERT INTO {} ({}) VALUES {}", qual(self.name), cols(&names), values.join(", ")));
    }

    /// Every row, as text, in order: compared before a migration and after its rollback.
    fn checksum(&self, c: &mut Client) -> String {
        one(c, &format!("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t", qual(self.name)))
    }

    /// How many rows `migrate` must rewrite in `col` (of the given kind).
    fn todo(&self, c: &mut Client, col: &str) -> i64 {
        let q = ident(col);
        let pred = match col {
            JS => format!("{q} IS NOT NULL AND stage_norm.normalize_stage_distribution({q}) IS NOT NULL AND {q} IS DISTINCT FROM stage_norm.normalize_stage_distribution({q})"),
            ARR => format!("{q} IS DISTINCT FROM stage_norm.normalize_stages({q}) AND stage_norm._array_unknowns({q}, stage_norm.normalize_stages({q})) = 0"),
            _ => format!("stage_norm.normalize_stage({q}) IS NOT NULL AND {q} IS DISTINCT FROM stage_norm.normalize_stage({q})"),
        };
        one(c, &format!("SELECT count(*) FROM {} WHERE {pred}", qual(self.name)))
    }
}

/// The newest run on (table, column): run_id, status, batches, rows_updated, table_name.
fn last_run(c: &mut Client, t: &str, col: &str) -> (i64, String, i32, i64, String) {
    let r = c
        .query_one(
            &format!(
                "SELECT run_id, status, batches, rows_updated, table_name FROM stage_norm.migration_runs
                  WHERE relid = {} AND column_name = {} ORDER BY run_id DESC LIMIT 1",
                reg(t),
                lit(col)
            ),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// A connection that keeps every NOTICE and WARNING the server sends.
fn listening(db: &str) -> (Client, Arc<Mutex<Vec<DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let c = dsn_for(db).parse::<postgres::Config>().unwrap().notice_callback(move |n| sink.lock().unwrap().push(n)).connect(NoTls).unwrap();
    (c, notices)
}

fn setup(db: &str) -> Client {
    let mut c = fresh_db(db);
    ok(&mut c, &format!("CREATE TABLE public.victim (id int); INSERT INTO public.victim VALUES (1); CREATE SCHEMA {}; CREATE DOMAIN {} AS text; CREATE DOMAIN {} AS text",
        ident(SCHEMA), qual(DOM_TEXT), qual(DOM_KEY)));
    for t in &TABLES {
        t.create(&mut c);
    }
    victim_alive(&mut c);
    c
}

/// The columns `stage_norm_normalize` on `table` governs, read from its arguments (pg_trigger.tgargs:
/// each argument's bytes followed by a NUL byte).
fn trigger_columns(c: &mut Client, table: &str) -> Vec<String> {
    one(
        c,
        &format!(
            "SELECT ARRAY(SELECT convert_from(substr(g.tgargs, p.s, p.e - p.s), getdatabaseencoding())
                            FROM (SELECT lag(i, 1, -1) OVER (ORDER BY i) + 2 AS s, i + 1 AS e
                                    FROM generate_series(0, length(g.tgargs) - 1) i WHERE get_byte(g.tgargs, i) = 0) p
                           ORDER BY p.s)
               FROM pg_trigger g WHERE g.tgrelid = {} AND g.tgname = 'stage_norm_normalize'",
            reg(table)
        ),
    )
}

/// `stage_norm.table_modes.columns` of `table` against `want`, exactly.
fn view_columns(c: &mut Client, table: &str, want: &[&str]) {
    let got: Vec<String> = one(c, &format!("SELECT columns::text[] FROM stage_norm.table_modes WHERE table_name = {}", reg(table)));
    assert_eq!(got, want);
}

/// A name as stage_norm's log lines quote it (docs/monitoring.md): every name here needs quotes.
fn logfmt(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn teardown(c: Client, db: &str) {
    drop(c);
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
}

fn attach_all(c: &mut Client, t: &Table) {
    let cols = GOVERNED.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ");
    ok(c, &format!("SELECT stage_norm.attach({}, {cols})", reg(t.name)));
}

#[test]
fn attach_modes_write_path_stats_and_breaker() {
    let db = "sn_quoting_write";
    let mut c = setup(db);
    let (mut w, notices) = listening(db);
    for t in &TABLES {
        let r = reg(t.name);
        // A partition's own trigger gives way to the parent's when the parent is attached.
        if let Some((p1, _)) = t.parts.first() {
            ok(&mut c, &format!("SELECT stage_norm.attach({}, {})", reg(p1), lit(TXT)));
        }
        attach_all(&mut c, t);
        if let Some((p1, _)) = t.parts.first() {
            let own: i64 = one(
                &mut c,
                &format!(
                    "SELECT count(*) FROM pg_trigger WHERE tgrelid = {} AND tgname = 'stage_norm_normalize' AND tgparentid = 0",
                    reg(p1)
                ),
            );
            assert_eq!(own, 0, "the partition's own trigger was dropped");
            let summaries: i64 = one(&mut c, &format!(
                "SELECT count(*) FROM pg_partition_tree({r}) p JOIN pg_trigger g ON g.tgrelid = p.relid WHERE g.tgname = 'stage_norm_summary'"));
            assert_eq!(summaries, 1 + t.parts.len() as i64, "parent and every partition have stage_norm_summary");
        }
        // The trigger's arguments are the columns exactly as named; table_modes lists them, the trigger on.
        assert_eq!(trigger_columns(&mut c, t.name), GOVERNED.to_vec(), "{}", t.name);
        view_columns(&mut c, t.name, &GOVERNED);
        let row =
            c.query_one(&format!("SELECT trigger_enabled, override_mode FROM stage_norm.table_modes WHERE table_name = {r}"), &[]).unwrap();
        assert!(row.get::<_, bool>(0));
        assert_eq!(row.get::<_, Option<String>>(1), None);
        // The same row looked up with the name as a bound text parameter.
        let n: i64 = c
            .query_one("SELECT count(*) FROM stage_norm.table_modes WHERE table_name = $1::text::regclass", &[&qual(t.name)])
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        // The trigger depends on every governed column (attach's _sync_trigger).
        let deps: Vec<String> = c
            .query(
                &format!(
                    "SELECT a.attname::text FROM pg_depend d JOIN pg_trigger g ON g.oid = d.objid
                       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                      WHERE d.classid = 'pg_trigger'::regclass AND g.tgrelid = {r} AND g.tgname = 'stage_norm_normalize'
                      ORDER BY a.attnum"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(deps, GOVERNED.to_vec());

        // Per-table mode, effective mode, the view, permission check.
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, 'shadow')"));
        assert_eq!(one::<String>(&mut c, &format!("SELECT stage_norm.effective_mode({r})")), "shadow");
        assert_eq!(one::<String>(&mut c, &format!("SELECT override_mode FROM stage_norm.table_modes WHERE table_name = {r}")), "shadow");
        assert_eq!(one::<String>(&mut c, &format!("SELECT mode FROM stage_norm.table_mode_settings WHERE tbl = {r}")), "shadow");
        assert!(one::<bool>(&mut c, &format!("SELECT stage_norm.may_set_table_mode({r})")));
        let e = fails(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, 'nope')"), "22023");
        assert!(e.message().contains("nope"), "{e:?}");
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, NULL)"));
        assert_eq!(one::<i64>(&mut c, &format!("SELECT count(*) FROM stage_norm.table_mode_settings WHERE tbl = {r}")), 0);
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, 'enforce')"));
        assert_eq!(one::<String>(&mut w, &format!("SELECT stage_norm.effective_mode({r})")), "enforce");

        // The write path under enforce: known variants rewritten, unknown ones refused with the
        // right fields in every column.
        ok(&mut w, "SET stage_norm.latency_sample_every = 1");
        let ins = |id: i32, col: &str, v: &str| {
            let k2 = if t.composite { format!(", {}", ident(K2)) } else { String::new() };
            let k2v = if t.composite { ", 'new'".to_string() } else { String::new() };
            format!("INSERT INTO {} ({}{k2}, {}) VALUES ({id}{k2v}, {v})", qual(t.name), ident(PK), ident(col))
        };
        ok(&mut w, &ins(1000, TXT, "'Series B'"));
        ok(&mut w, &ins(1001, JS, r#"'{"Seed": 1}'"#));
        ok(&mut w, &ins(1002, ARR, "'{\"Series B\",seed}'"));
        ok(&mut w, &ins(1003, INJ, "'pre_seed'"));
        ok(&mut w, &ins(1004, LONG, "'Series C'"));
        let stored: Vec<Option<String>> = w
            .query(
                &format!(
                    "SELECT coalesce({}, {}::text, {}::text, {}, {}) FROM {} WHERE {} >= 1000 ORDER BY {}",
                    ident(TXT),
                    ident(JS),
                    ident(ARR),
                    ident(INJ),
                    ident(LONG),
                    qual(t.name),
                    ident(PK),
                    ident(PK)
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let want = ["series-b", r#"{"seed": 1}"#, "{series-b,seed}", "pre-seed", "series-c+"];
        assert_eq!(stored, want.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>(), "{}", t.name);
        for (col, v) in [(TXT, "'bogus'"), (JS, r#"'{"bogus": 1}'"#), (ARR, "'{bogus}'"), (INJ, "'bogus'"), (LONG, "'bogus'")] {
            let e = fails(&mut w, &ins(2000, col, v), "23514");
            assert_eq!(e.schema(), Some(SCHEMA), "{e:?}");
            assert_eq!(e.table(), Some(t.leaf(2000)), "{e:?}");
            assert_eq!(e.column(), Some(col), "{e:?}");
            assert!(e.message().contains(col), "the message names the column: {e:?}");
        }
        // warn: stored, with a WARNING naming the column.
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, 'warn')"));
        notices.lock().unwrap().clear();
        ok(&mut w, "SET stage_norm.log_sample_rate = 1");
        ok(&mut w, &ins(1005, INJ, "'bogus'"));
        ok(&mut w, "RESET stage_norm.log_sample_rate");
        let warned = notices.lock().unwrap().iter().any(|n| n.message().contains(INJ));
        assert!(warned, "a WARNING names {INJ}: {:?}", notices.lock().unwrap());
        // The sampled server-log line: names in logfmt quoting, one field each.
        let own = logfmt(&format!("{SCHEMA}.{}", t.leaf(1005)));
        let table = if t.parts.is_empty() { own } else { format!("{} partition={own}", logfmt(&format!("{SCHEMA}.{}", t.name))) };
        let line = format!("stage_norm: event=unknown_value table={table} column={} mode=warn kind=text value=\"bogus\"", logfmt(INJ));
        let log = server_log();
        assert!(log.contains(&line), "the log has: {line}");
        let counters: i64 = one(
            &mut w,
            &format!(
                "SELECT coalesce(sum(normalized + rejected + warned), 0)::int8 FROM stage_norm.session_counters
              WHERE table_name = {r} OR table_name IN (SELECT relid FROM pg_partition_tree({r}))"
            ),
        );
        assert!(counters >= 11, "session_counters: {counters}");

        // Cluster-wide statistics, by the names as they are.
        let stats: i64 = c
            .query_one(
                "SELECT coalesce(sum(count), 0)::int8 FROM stage_norm.stats
                  WHERE datname = current_database() AND schema_name = $1 AND column_name = $2 AND outcome = 'normalized'
                    AND relid = $3::text::regclass::oid",
                &[&SCHEMA, &TXT, &qual(t.name)],
            )
            .unwrap()
            .get(0);
        assert!(stats >= 1, "stats for {}: {stats}", t.name);
        let names: Vec<String> = c
            .query(
                "SELECT DISTINCT table_name::text FROM stage_norm.stats WHERE datname = current_database() AND relid = $1::text::regclass::oid",
                &[&qual(t.name)],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(names, vec![t.name.to_string()]);
        let sampled: i64 = c
            .query_one(
                "SELECT coalesce(sum(sampled_calls), 0)::int8 FROM stage_norm.latency WHERE datname = current_database() AND schema_name = $1 AND table_name = $2",
                &[&SCHEMA, &t.name],
            )
            .unwrap()
            .get(0);
        assert!(sampled >= 1, "latency for {}", t.name);
        let buckets: i64 = c
            .query_one(
                "SELECT count(*) FROM stage_norm.latency_buckets WHERE datname = current_database() AND schema_name = $1 AND table_name = $2",
                &[&SCHEMA, &t.name],
            )
            .unwrap()
            .get(0);
        assert!(buckets >= 1);

        // The breaker: trip it, then run the HINT's own reset_breaker(...) statement.
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, 'enforce')"));
        ok(&mut w, "SET stage_norm.breaker_reject_ratio = 0.01; SET stage_norm.breaker_min_rows = 1; SET stage_norm.breaker_window = 3600");
        notices.lock().unwrap().clear();
        fails(&mut w, &ins(2001, TXT, "'bogus'"), "23514");
        let hint = notices
            .lock()
            .unwrap()
            .iter()
            .find(|n| n.message().contains("circuit breaker tripped"))
            .map(|n| (n.message().to_owned(), n.hint().unwrap_or_default().to_owned()))
            .unwrap_or_else(|| panic!("no breaker WARNING: {:?}", notices.lock().unwrap()));
        assert!(hint.0.contains(&qual(t.name)), "the WARNING names {}: {}", qual(t.name), hint.0);
        assert!(one::<bool>(&mut c, &format!("SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = {r}")));
        assert!(one::<bool>(
            &mut c,
            &format!("SELECT tripped FROM stage_norm.breakers WHERE datname = current_database() AND relid = {r}::oid")
        ));
        let sql = hint.1.split_once("then ").and_then(|(_, s)| s.split_once("; see")).map(|(s, _)| s.to_owned()).expect(&hint.1);
        assert!(one::<bool>(&mut c, &sql), "the HINT's statement resets this table's breaker: {sql}");
        assert!(!one::<bool>(&mut c, &format!("SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = {r}")));
        assert!(!one::<bool>(&mut c, &format!("SELECT stage_norm.reset_breaker({r})")));
        ok(&mut w, "RESET stage_norm.breaker_reject_ratio; RESET stage_norm.breaker_min_rows; RESET stage_norm.breaker_window");

        // detach: true once, then false; the override stays.
        assert!(one::<bool>(&mut c, &format!("SELECT stage_norm.detach({r})")));
        assert!(!one::<bool>(&mut c, &format!("SELECT stage_norm.detach({r})")));
        let left: i64 = one(
            &mut c,
            &format!(
                "SELECT count(*) FROM pg_trigger g WHERE g.tgname LIKE 'stage_norm%'
                AND (g.tgrelid = {r} OR g.tgrelid IN (SELECT relid FROM pg_partition_tree({r})))"
            ),
        );
        assert_eq!(left, 0);
        let row = c
            .query_one(&format!("SELECT columns, trigger_enabled, override_mode FROM stage_norm.table_modes WHERE table_name = {r}"), &[])
            .unwrap();
        assert_eq!(row.get::<_, Option<Vec<String>>>(0), None);
        assert!(!row.get::<_, bool>(1));
        assert_eq!(row.get::<_, String>(2), "enforce");
        ok(&mut c, &format!("SELECT stage_norm.set_table_mode({r}, NULL)"));
        victim_alive(&mut c);
    }
    drop(w);
    teardown(c, db);
}

#[test]
fn add_check_migrate_verify_rollback() {
    let db = "sn_quoting_migrate";
    let mut c = setup(db);
    for t in &TABLES {
        let r = reg(t.name);
        attach_all(&mut c, t);
        ok(&mut c, "SET stage_norm.mode = enforce");

        // add_check, validate => false inside a transaction block: NOT VALID, named after the column.
        for col in GOVERNED {
            ok(&mut c, &format!("BEGIN; CALL stage_norm.add_check({r}, {}, false); COMMIT", lit(col)));
        }
        let attnum: i16 = one(&mut c, &format!("SELECT attnum FROM pg_attribute WHERE attrelid = {r} AND attname = {}", lit(LONG)));
        let conname = |col: &str| if col == LONG { format!("stage_canonical_{attnum}") } else { format!("{col}_stage_canonical") };
        for col in GOVERNED {
            let v: bool = c
                .query_one(&format!("SELECT convalidated FROM pg_constraint WHERE conrelid = {r} AND conname = $1"), &[&conname(col)])
                .unwrap_or_else(|e| panic!("constraint {:?} on {}: {e}", conname(col), t.name))
                .get(0);
            assert!(!v);
        }
        // validate => true: refused in a block (25001), and by the rows (23514) outside one.
        ok(&mut c, "BEGIN");
        fails(&mut c, &format!("CALL stage_norm.add_check({r}, {})", lit(TXT)), "25001");
        ok(&mut c, "ROLLBACK");
        let e = fails(&mut c, &format!("CALL stage_norm.add_check({r}, {})", lit(TXT)), "23514");
        assert_eq!(e.constraint(), Some(conname(TXT).as_str()), "{e:?}");
        // Missing and unsuitable columns: the fields name them as they are.
        let missing = "no such \"col\"; 'x'";
        for sql in [
            format!("CALL stage_norm.add_check({r}, {})", lit(missing)),
            format!("SELECT stage_norm.attach({r}, {})", lit(missing)),
            format!("SELECT stage_norm.verify({r}, {})", lit(missing)),
            format!("CALL stage_norm.migrate({r}, {})", lit(missing)),
        ] {
            let e = fails(&mut c, &sql, "42703");
            assert_eq!((e.schema(), e.table(), e.column()), (Some(SCHEMA), Some(t.name), Some(missing)), "{sql}: {e:?}");
            assert!(e.message().contains(missing), "{e:?}");
        }
        for sql in [format!("CALL stage_norm.add_check({r}, {})", lit(PK)), format!("SELECT stage_norm.attach({r}, {})", lit(PK))] {
            let e = fails(&mut c, &sql, "42804");
            assert_eq!((e.schema(), e.table(), e.column()), (Some(SCHEMA), Some(t.name), Some(PK)), "{sql}: {e:?}");
        }
        let e = fails(&mut c, &format!("SELECT stage_norm.attach({r}, {}, {})", lit(TXT), lit(TXT)), "42701");
        assert!(e.message().contains("twice"), "{e:?}");
        // The NOT VALID constraints guard new writes, so the rollback below could not put the
        // originals back: dropped by the names add_check gave them, added again at the end.
        for col in GOVERNED {
            ok(&mut c, &format!("ALTER TABLE {} DROP CONSTRAINT {}", qual(t.name), ident(&conname(col))));
        }

        // migrate: small batches, max_batches, resume; verify, assert_verified, rollback.
        let before = t.checksum(&mut c);
        let todo = t.todo(&mut c, TXT);
        assert_eq!(todo, 12);
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}, batch_size => 4, max_batches => 2)", lit(TXT)));
        let (run, status, batches, _, table_name) = last_run(&mut c, t.name, TXT);
        assert_eq!((status.as_str(), batches), ("paused", 2));
        assert_eq!(table_name, qual(t.name), "table_name as regclass prints it");
        let p = c
            .query_one(
                "SELECT table_name, column_name::text, status, percent_done::float8 FROM stage_norm.migration_progress WHERE run_id = $1",
                &[&run],
            )
            .unwrap();
        assert_eq!(
            (p.get::<_, String>(0), p.get::<_, String>(1), p.get::<_, String>(2)),
            (qual(t.name), TXT.to_string(), "paused".to_string())
        );
        let pct: f64 = p.get(3);
        assert!(pct > 0.0 && pct < 100.0, "{pct}");
        // A second paused step, then the rest.
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}, batch_size => 4, max_batches => 1)", lit(TXT)));
        assert_eq!(last_run(&mut c, t.name, TXT).2, 3);
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}, batch_size => 4)", lit(TXT)));
        let (run2, status, batches, updated, _) = last_run(&mut c, t.name, TXT);
        assert_eq!(run2, run, "resumed, not restarted");
        assert_eq!(status, "finished");
        assert_eq!(batches, 6, "batches of 4 over 21 rows (partitioned: 10 + 11)");
        assert_eq!(updated, todo);
        let batch_rows: i64 =
            one(&mut c, &format!("SELECT sum(rows_scanned)::int8 FROM stage_norm.migration_batches WHERE run_id = {run}"));
        assert_eq!(batch_rows, ROWS);
        assert_eq!(t.todo(&mut c, TXT), 0);
        let v = c
            .query_one(
                &format!(
                    "SELECT v->>'table', v->>'column', (v->>'rows')::int8, (v->>'nulls')::int8, (v->>'non_canonical')::int8,
                            v->'top_non_canonical'->0->>'value', v->'last_run'->>'status', (v->'last_run'->>'row_count_unchanged')::bool
                       FROM stage_norm.verify({r}, {}) v",
                    lit(TXT)
                ),
                &[],
            )
            .unwrap();
        assert_eq!(v.get::<_, String>(0), qual(t.name));
        assert_eq!(v.get::<_, String>(1), TXT);
        assert_eq!((v.get::<_, i64>(2), v.get::<_, i64>(3), v.get::<_, i64>(4)), (ROWS, 3, 3));
        assert_eq!(v.get::<_, String>(5), "growth");
        assert_eq!(v.get::<_, String>(6), "finished");
        assert!(v.get::<_, bool>(7));
        let e = fails(&mut c, &format!("SELECT stage_norm.assert_verified({r}, {})", lit(TXT)), "23514");
        assert_eq!((e.schema(), e.table(), e.column()), (Some(SCHEMA), Some(t.name), Some(TXT)), "{e:?}");
        assert!(e.message().contains(TXT) && e.message().contains(&qual(t.name)), "{e:?}");
        assert!(e.detail().unwrap_or_default().contains("\"non_canonical\": 3"), "{e:?}");
        // Rolled back: exactly the original rows.
        ok(&mut c, &format!("CALL stage_norm.rollback_migration({run}, batch_size => 2)"));
        assert_eq!(t.checksum(&mut c), before, "rollback restores every row of {}", t.name);
        let r2 = c
            .query_one("SELECT status, rows_restored, rows_conflicting FROM stage_norm.migration_runs WHERE run_id = $1", &[&run])
            .unwrap();
        assert_eq!((r2.get::<_, String>(0), r2.get::<_, i64>(1), r2.get::<_, i64>(2)), ("rolled back".to_string(), todo, 0));

        // Every other column: jsonb without undo, the array tenant by tenant, the rest plain.
        for (col, opts) in [
            (TXT, ", batch_size => 5"),
            (JS, ", batch_size => 5, keep_undo => false"),
            (INJ, ", batch_size => 2, pause_ms => 1"),
            (LONG, ", batch_size => 7"),
        ] {
            let todo = t.todo(&mut c, col);
            assert!(todo > 0, "{col}");
            let before = t.checksum(&mut c);
            ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}{opts})", lit(col)));
            let (run, status, batches, updated, _) = last_run(&mut c, t.name, col);
            assert_eq!((status.as_str(), updated), ("finished", todo), "{col} of {}", t.name);
            assert!(batches >= 3, "{batches}");
            assert_eq!(t.todo(&mut c, col), 0);
            if col != JS {
                // rolled back exactly, then migrated again by a new run
                ok(&mut c, &format!("CALL stage_norm.rollback_migration({run})"));
                assert_eq!(t.checksum(&mut c), before, "rollback of {col} on {}", t.name);
                ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}{opts})", lit(col)));
                let (run2, status, _, updated, _) = last_run(&mut c, t.name, col);
                assert_eq!((status.as_str(), updated), ("finished", todo));
                assert!(run2 > run);
            }
        }
        let todo = t.todo(&mut c, ARR);
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {}, batch_size => 2, max_batches => 3, tenant => {})", lit(ARR), lit(TEN)));
        let (run, status, ..) = last_run(&mut c, t.name, ARR);
        assert_eq!(status, "paused");
        let e = fails(&mut c, &format!("CALL stage_norm.migrate({r}, {}, tenant => {})", lit(ARR), lit(INJ)), "22023");
        assert!(e.message().contains(&ident(TEN)), "{e:?}");
        let e = fails(&mut c, &format!("CALL stage_norm.migrate({r}, {}, tenant => {})", lit(JS), lit("no \"such\" 'tenant'")), "42703");
        assert_eq!(e.column(), Some("no \"such\" 'tenant'"));
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {})", lit(ARR)));
        let (run2, status, _, updated, _) = last_run(&mut c, t.name, ARR);
        assert_eq!((run2, status.as_str(), updated), (run, "finished", todo));
        let tenants: Vec<String> = c
            .query(
                "SELECT coalesce(tenant, 'NULL') FROM stage_norm.migration_tenant_progress WHERE run_id = $1 AND tenant_column = $2 ORDER BY 1",
                &[&run, &TEN],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(tenants, ["NULL", "f'0\"; \\", "f'1\"; \\", "f'2\"; \\"]);
        let per: String = one(&mut c, &format!(
            "SELECT string_agg(k || '=' || (v->>'rows'), ',' ORDER BY k) FROM jsonb_each(stage_norm.verify({r}, {}, {})->'tenants') e(k, v)",
            lit(ARR), lit(TEN)));
        assert_eq!(per, "NULL=3,f'0\"; \\=6,f'1\"; \\=6,f'2\"; \\=6");
        let purged: i64 = one(&mut c, &format!("SELECT stage_norm.purge_migration_undo(run_id => {run})"));
        assert_eq!(purged, todo);

        // Clean the unknown values and prove every column canonical; then validate the CHECKs.
        ok(&mut c, "SET stage_norm.mode = warn");
        ok(
            &mut c,
            &format!(
                "UPDATE {q} SET {t1} = NULLIF({t1}, 'growth'), {t2} = NULLIF({t2}, 'growth'), {t3} = NULLIF({t3}, 'growth'),
                        {j} = CASE WHEN stage_norm.is_valid_stage_distribution({j}) THEN {j} END,
                        {a} = CASE WHEN stage_norm.is_canonical_stage_array({a}) THEN {a} END",
                q = qual(t.name),
                t1 = ident(TXT),
                t2 = ident(INJ),
                t3 = ident(LONG),
                j = ident(JS),
                a = ident(ARR)
            ),
        );
        for col in GOVERNED {
            let n: i64 = one(&mut c, &format!("SELECT (stage_norm.assert_verified({r}, {})->>'non_canonical')::int8", lit(col)));
            assert_eq!(n, 0);
            ok(&mut c, &format!("CALL stage_norm.add_check({r}, {})", lit(col)));
            let v: bool = c
                .query_one(&format!("SELECT convalidated FROM pg_constraint WHERE conrelid = {r} AND conname = $1"), &[&conname(col)])
                .unwrap()
                .get(0);
            assert!(v, "{col} validated");
            // again: a no-op
            ok(&mut c, &format!("CALL stage_norm.add_check({r}, {})", lit(col)));
        }
        victim_alive(&mut c);
    }
    // A table without a primary key: 55000 naming it.
    ok(&mut c, &format!("CREATE TABLE {} ({} text)", qual("No \"PK\"; 'x'"), ident(TXT)));
    let e = fails(&mut c, &format!("CALL stage_norm.migrate({}, {})", reg("No \"PK\"; 'x'"), lit(TXT)), "55000");
    assert_eq!((e.schema(), e.table()), (Some(SCHEMA), Some("No \"PK\"; 'x'")), "{e:?}");
    victim_alive(&mut c);
    teardown(c, db);
}

#[test]
fn ddl_follower_and_stage_set_changes() {
    let db = "sn_quoting_ddl";
    let mut c = setup(db);
    for t in &TABLES {
        let r = reg(t.name);
        attach_all(&mut c, t);
        // RENAME COLUMN to another hostile name: the trigger follows, the write path uses it.
        ok(&mut c, &format!("ALTER TABLE {} RENAME COLUMN {} TO {}", qual(t.name), ident(TXT), ident(RENAMED)));
        assert_eq!(trigger_columns(&mut c, t.name), vec![RENAMED, JS, ARR, INJ, LONG]);
        view_columns(&mut c, t.name, &[RENAMED, JS, ARR, INJ, LONG]);
        let k2 = if t.composite { format!(", {}", ident(K2)) } else { String::new() };
        let k2v = if t.composite { ", 'new'" } else { "" };
        ok(&mut c, &format!("INSERT INTO {} ({}{k2}, {}) VALUES (500{k2v}, 'Series B')", qual(t.name), ident(PK), ident(RENAMED)));
        let v: String = one(&mut c, &format!("SELECT {} FROM {} WHERE {} = 500", ident(RENAMED), qual(t.name), ident(PK)));
        assert_eq!(v, "series-b");
        ok(&mut c, "SET stage_norm.mode = enforce");
        let e = fails(&mut c, &format!("UPDATE {} SET {} = 'bogus' WHERE {} = 500", qual(t.name), ident(RENAMED), ident(PK)), "23514");
        assert_eq!(e.column(), Some(RENAMED));
        ok(&mut c, "RESET stage_norm.mode");
        // DROP COLUMN of a governed column: refused without CASCADE; CASCADE drops the trigger.
        fails(&mut c, &format!("ALTER TABLE {} DROP COLUMN {}", qual(t.name), ident(INJ)), "2BP01");
        ok(&mut c, &format!("ALTER TABLE {} DROP COLUMN {} CASCADE", qual(t.name), ident(INJ)));
        assert_eq!(one::<i64>(&mut c, &format!("SELECT count(*) FROM stage_norm.table_modes WHERE table_name = {r}")), 0);
        ok(&mut c, &format!("SELECT stage_norm.attach({r}, {}, {}, {})", lit(RENAMED), lit(JS), lit(ARR)));
        // Rename the column back while governed.
        ok(&mut c, &format!("ALTER TABLE {} RENAME COLUMN {} TO {}", qual(t.name), ident(RENAMED), ident(TXT)));
        assert_eq!(trigger_columns(&mut c, t.name), vec![TXT, JS, ARR]);
        view_columns(&mut c, t.name, &[TXT, JS, ARR]);
        // A hand-written trigger (as a restore writes it): the event trigger records its columns.
        assert!(one::<bool>(&mut c, &format!("SELECT stage_norm.detach({r})")));
        ok(
            &mut c,
            &format!(
                "CREATE TRIGGER stage_norm_normalize BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger({}, {})",
                qual(t.name),
                lit(ARR),
                lit(LONG)
            ),
        );
        let deps: i64 = one(
            &mut c,
            &format!(
                "SELECT count(*) FROM pg_depend d JOIN pg_trigger g ON g.oid = d.objid
              WHERE d.classid = 'pg_trigger'::regclass AND d.refobjsubid > 0 AND g.tgrelid = {r} AND g.tgname = 'stage_norm_normalize'"
            ),
        );
        assert_eq!(deps, 2);
        assert_eq!(trigger_columns(&mut c, t.name), vec![ARR, LONG]);
        fails(&mut c, &format!("ALTER TABLE {} DROP COLUMN {}", qual(t.name), ident(LONG)), "2BP01");
        ok(&mut c, &format!("SELECT stage_norm.attach({r}, {}, {}, {})", lit(TXT), lit(JS), lit(ARR)));
        victim_alive(&mut c);
    }

    // Stage set changes while validated CHECKs sit on the hostile tables.
    for t in &TABLES {
        let r = reg(t.name);
        ok(&mut c, &format!("CALL stage_norm.migrate({r}, {})", lit(TXT)));
        ok(&mut c, &format!("UPDATE {} SET {} = NULL WHERE {} = 'growth'", qual(t.name), ident(TXT), ident(TXT)));
        ok(&mut c, &format!("CALL stage_norm.add_check({r}, {})", lit(TXT)));
    }
    let e = fails(&mut c, "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b')", "23514");
    let detail = e.detail().unwrap_or_default().to_owned();
    for t in &TABLES {
        // (a partitioned table's rows are named by the partitions that hold them)
        let names: Vec<&str> = if t.parts.is_empty() { vec![t.name] } else { t.parts.iter().map(|p| p.0).collect() };
        for n in names {
            let named = format!("{} (constraint {}): 'series-c+'", qual(n), ident(&format!("{TXT}_stage_canonical")));
            assert!(detail.contains(&named), "DETAIL names {named}: {detail}");
        }
    }
    assert!(detail.contains("'series-c+'"), "{detail}");
    let e = fails(&mut c, "SELECT stage_norm.rename_stage('series-a', 'series-a1')", "23514");
    assert!(e.detail().unwrap_or_default().contains(&qual(TABLES[1].name)), "{e:?}");
    // A set every row still passes: the re-check runs on every hostile table, and succeeds.
    ok(&mut c, "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'growth')");
    assert_eq!(one::<Option<i32>>(&mut c, "SELECT stage_norm.stage_rank('growth')"), Some(6));
    ok(&mut c, "SELECT stage_norm.rename_stage('growth', 'late')");
    // A governed varchar(9) column is too short for a longer stage: 42804 naming it.
    let narrow = TABLES.iter().find(|t| t.narrow).unwrap();
    ok(&mut c, &format!("SELECT stage_norm.attach({}, {})", reg(narrow.name), lit(NARROW)));
    let e = fails(&mut c, "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'late-growth')", "42804");
    let named = format!("{}.{} (9 characters)", qual(narrow.name), ident(NARROW));
    assert!(e.detail().unwrap_or_default().contains(&named), "DETAIL names {named}: {e:?}");
    ok(&mut c, "SELECT stage_norm.reset_stages()");
    assert_eq!(one::<Option<i32>>(&mut c, "SELECT stage_norm.stage_rank('late')"), None);
    victim_alive(&mut c);
    teardown(c, db);
}

#[test]
fn names_as_users_spell_them() {
    let db = "sn_quoting_spelling";
    let mut c = setup(db);
    let weird = TABLES[0].name;
    // The quoted spelling resolves; the bare one errors cleanly (no such relation, or a name
    // that does not parse), before anything runs.
    let oid: u32 = one(&mut c, &format!("SELECT {}::oid", reg(weird)));
    assert!(oid > 0);
    assert_eq!(one::<u32>(&mut c, &format!("SELECT '{}.\"Weird \"\"T\"\"\"'::regclass::oid", ident(SCHEMA).replace('\'', "''"))), oid);
    for t in &TABLES {
        let bare = lit(&format!("{SCHEMA}.{}", t.name));
        for sql in [
            format!("SELECT {bare}::regclass"),
            format!("SELECT stage_norm.attach({bare}, {})", lit(TXT)),
            format!("SELECT stage_norm.set_table_mode({bare}, 'warn')"),
            format!("CALL stage_norm.migrate({bare}, {})", lit(TXT)),
            format!("SELECT stage_norm.verify({bare}, {})", lit(TXT)),
        ] {
            let e = c.batch_execute(&sql).unwrap_err();
            let code = e.code().map(|s| s.code().to_owned()).unwrap_or_default();
            assert!(["42602", "42P01", "3F000"].contains(&code.as_str()), "{sql}: {e} {:?}", e.as_db_error());
        }
        // The table name alone, unqualified and unquoted: not found on the path.
        let e = c.batch_execute(&format!("SELECT {}::regclass", lit(t.name))).unwrap_err();
        assert!(["42602", "42P01"].contains(&e.code().unwrap().code()), "{e}");
        victim_alive(&mut c);
    }
    // With the hostile schema on search_path, the unqualified quoted name works everywhere, and
    // the names in the bookkeeping are as that path prints them.
    ok(&mut c, &format!("SET search_path = {}, public", ident(SCHEMA)));
    let t = &TABLES[1];
    let short = lit(&ident(t.name));
    ok(&mut c, &format!("SELECT stage_norm.attach({short}, {}, {})", lit(TXT), lit(ARR)));
    ok(&mut c, &format!("SELECT stage_norm.set_table_mode({short}, 'warn')"));
    assert_eq!(one::<String>(&mut c, &format!("SELECT stage_norm.effective_mode({short})")), "warn");
    assert_eq!(
        one::<String>(&mut c, &format!("SELECT table_name::text FROM stage_norm.table_modes WHERE table_name = {short}::regclass")),
        ident(t.name)
    );
    let before = t.checksum(&mut c);
    ok(&mut c, &format!("CALL stage_norm.migrate({short}, {}, batch_size => 3)", lit(TXT)));
    let (run, status, _, updated, table_name) = last_run(&mut c, t.name, TXT);
    assert_eq!((status.as_str(), updated), ("finished", 12));
    assert_eq!(table_name, ident(t.name), "as the caller's path prints it");
    assert_eq!(one::<String>(&mut c, &format!("SELECT stage_norm.verify({short}, {})->>'table'", lit(TXT))), qual(t.name));
    ok(&mut c, &format!("CALL stage_norm.rollback_migration({run})"));
    assert_eq!(t.checksum(&mut c), before);
    // The run's table_name still resolves after search_path changes back (it is relid that counts).
    ok(&mut c, "RESET search_path");
    ok(&mut c, &format!("CALL stage_norm.migrate({}, {}, batch_size => 3)", reg(t.name), lit(TXT)));
    assert_eq!(last_run(&mut c, t.name, TXT).1, "finished");
    // A run with a tenant, under the hostile path again, and an add_check there.
    ok(&mut c, &format!("SET search_path = {}, public", ident(SCHEMA)));
    ok(&mut c, &format!("CALL stage_norm.migrate({short}, {}, batch_size => 2, tenant => {})", lit(ARR), lit(TEN)));
    assert_eq!(last_run(&mut c, t.name, ARR).1, "finished");
    ok(&mut c, &format!("CALL stage_norm.add_check({short}, {}, false)", lit(ARR)));
    assert!(one::<bool>(&mut c, &format!("SELECT stage_norm.detach({short})")));
    // Bound parameters: the name as text, cast by the server.
    let n: String = c.query_one("SELECT stage_norm.verify($1::text::regclass, $2::name)->>'rows'", &[&qual(t.name), &TXT]).unwrap().get(0);
    assert_eq!(n, ROWS.to_string());
    victim_alive(&mut c);
    teardown(c, db);
}

/// `table_modes.columns` gives back the trigger's arguments byte for byte (it decoded them with
/// encode(tgargs, 'escape'): a backslash came out doubled, a byte above 0x7f as an octal escape,
/// and a name holding the text `\000` as two columns), so that feeding it back to attach works.
#[test]
fn table_modes_columns_round_trip() {
    let db = "sn_quoting_columns";
    let mut c = fresh_db(db);
    c.batch_execute(
        r#"CREATE TABLE rt (id int PRIMARY KEY, "a\b" text, "Stufe é" text, "x\000y" text);
           SELECT stage_norm.attach('rt', 'a\b', 'Stufe é', 'x\000y');"#,
    )
    .unwrap();
    let columns = |c: &mut Client| -> Vec<String> {
        one(c, "SELECT columns::text[] FROM stage_norm.table_modes WHERE table_name = 'public.rt'::regclass")
    };
    assert_eq!(columns(&mut c), ["a\\b", "Stufe é", "x\\000y"]);
    c.batch_execute("SELECT stage_norm.attach(table_name, VARIADIC columns) FROM stage_norm.table_modes WHERE table_name = 'public.rt'::regclass")
        .unwrap();
    assert_eq!(columns(&mut c), ["a\\b", "Stufe é", "x\\000y"]);
    teardown(c, db);
}
