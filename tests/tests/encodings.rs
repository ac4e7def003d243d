//! Messages in every server encoding (#27 item 3). stage_norm builds its messages in Rust
//! (UTF-8) from its own ASCII text and what users wrote, which the server holds in the
//! database's encoding. Before the fix, in an EUC_JP database a governed table in warn mode
//! refused an ASCII value of 100 characters with 22021 "invalid byte sequence" (the message's
//! "…") and lost the row; enforce raised 22021 instead of 23514, without its fields; LATIN1
//! showed "Â±". One database per encoding family: UTF8, SQL_ASCII (no conversion at all),
//! LATIN1 (single byte), EUC_JP (multibyte, not UTF-8). The client talks UTF-8; the server
//! converts every message from the database's encoding.
use std::sync::{Arc, Mutex};

use postgres::{Client, Config, NoTls};
use stage_norm_client_tests::*;

struct Case {
    encoding: &'static str,
    /// A governed table's name and an unknown label, both written in this encoding.
    table: &'static str,
    label: &'static str,
}

const CASES: [Case; 4] = [
    Case { encoding: "UTF8", table: "portefeuille_é", label: "Série Z ±" },
    Case { encoding: "SQL_ASCII", table: "portefeuille_é", label: "Série Z ±" },
    Case { encoding: "LATIN1", table: "portefeuille_é", label: "Série Z ±" },
    Case { encoding: "EUC_JP", table: "ポートフォリオ", label: "シリーズＺ" },
];

fn connect_with_notices(db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut cfg: Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| {
        sink.lock().unwrap().push(format!("{}|{}|{}|{}", n.code().code(), n.message(), n.detail().unwrap_or(""), n.hint().unwrap_or("")))
    });
    (cfg.connect(NoTls).unwrap(), notices)
}

fn database(case: &Case) -> String {
    let db = format!("sn_enc_{}", case.encoding.to_lowercase());
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {db} ENCODING '{}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            case.encoding
        ))
        .unwrap();
    let mut c = connect(&db);
    c.batch_execute("CREATE EXTENSION stage_norm").unwrap();
    let t = case.table;
    c.batch_execute(&format!(
        "CREATE TABLE \"{t}\" (id int PRIMARY KEY, stage text, dist jsonb);
         SELECT stage_norm.attach('\"{t}\"', 'stage', 'dist');"
    ))
    .unwrap();
    db
}

fn assert_clean(what: &str, text: &str) {
    for bad in ["panicked", "backtrace", ".rs:", "\u{fffd}", "Â"] {
        assert!(!text.contains(bad), "{what}: {bad:?} in {text:?}");
    }
}

#[test]
fn messages_reach_the_client_in_every_encoding() {
    for case in &CASES {
        let db = database(case);
        let (mut c, notices) = connect_with_notices(&db);
        let t = case.table;
        let enc: String = c.query_one("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()", &[]).unwrap().get(0);
        assert_eq!(enc, case.encoding);

        // warn: the rows are stored, and the WARNINGs arrive (100 ASCII characters: quoted with "...").
        c.execute(&format!("INSERT INTO \"{t}\" VALUES (1, repeat('x', 100))"), &[]).unwrap_or_else(|e| panic!("{}: warn refused an ASCII value: {e}", case.encoding));
        c.execute(&format!("INSERT INTO \"{t}\" VALUES (2, $1)"), &[&case.label]).unwrap_or_else(|e| panic!("{}: warn refused {:?}: {e}", case.encoding, case.label));
        c.execute(&format!("INSERT INTO \"{t}\" (id, dist) VALUES (3, '{{\"seed\": 0.5, \"series-a\": 0.6}}')"), &[]).unwrap();
        let n: i64 = c.query_one(&format!("SELECT count(*) FROM \"{t}\""), &[]).unwrap().get(0);
        assert_eq!(n, 3, "{}: rows lost", case.encoding);
        let stored: String = c.query_one(&format!("SELECT stage FROM \"{t}\" WHERE id = 2"), &[]).unwrap().get(0);
        assert_eq!(stored, case.label);
        let seen = notices.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{}: {seen:?}", case.encoding);
        for n in &seen {
            assert!(n.starts_with("01000|"), "{}: {n}", case.encoding);
            assert_clean(case.encoding, n);
            assert!(n.contains(t), "{}: the table's name {t:?} in {n}", case.encoding);
        }
        assert!(seen[0].contains(&format!("\"{}...\"", "x".repeat(64))), "{}: {}", case.encoding, seen[0]);
        assert!(seen[1].contains(&format!("value \"{}\"", case.label)), "{}: {}", case.encoding, seen[1]);
        assert!(seen[2].contains("+/- 1e-6"), "{}: {}", case.encoding, seen[2]);

        // enforce: 23514 with its fields, the value and the names as they were written.
        c.batch_execute("SET stage_norm.mode = 'enforce'").unwrap();
        for (id, value) in [(10, "y".repeat(100)), (11, case.label.to_string())] {
            let err = c.execute(&format!("INSERT INTO \"{t}\" VALUES ($1, $2)"), &[&id, &value]).unwrap_err();
            let db_err = err.as_db_error().unwrap_or_else(|| panic!("{}: {err}", case.encoding));
            assert_eq!(db_err.code().code(), "23514", "{}: {db_err}", case.encoding);
            assert_eq!(db_err.table(), Some(t), "{}", case.encoding);
            assert_eq!(db_err.column(), Some("stage"), "{}", case.encoding);
            assert_eq!(db_err.schema(), Some("public"), "{}", case.encoding);
            let text = format!("{}|{}|{}", db_err.message(), db_err.detail().unwrap_or(""), db_err.hint().unwrap_or(""));
            assert_clean(case.encoding, &text);
            let shown = if value.len() > 64 { format!("{}...", &value[..64]) } else { value.clone() };
            assert!(db_err.message().contains(&format!("value \"{shown}\"")), "{}: {}", case.encoding, db_err.message());
        }
        c.batch_execute("RESET stage_norm.mode").unwrap();

        // The functions' texts: distribution reasons, errors raised through pgrx.
        let reasons: Vec<String> = c
            .query_one("SELECT stage_norm.stage_distribution_errors($1::text::jsonb)", &[&format!("{{\"{}\": 0.5, \"seed\": 0.6}}", case.label)])
            .unwrap()
            .get(0);
        assert_eq!(reasons.len(), 2, "{}: {reasons:?}", case.encoding);
        for r in &reasons {
            assert_clean(case.encoding, r);
        }
        assert!(reasons[1].contains("(must be 1 +/- 1e-6)"), "{}: {reasons:?}", case.encoding);
        let err = c.batch_execute("SELECT stage_norm.add_alias('Angel', 'nope')").unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("22023"));
        let err = c.batch_execute("SELECT stage_norm.summary_trigger()").unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("39P01"));
        assert_clean(case.encoding, &format!("{:?}", err.as_db_error()));
    }
}
