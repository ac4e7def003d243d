//! A configuration change in a prepared, uncommitted transaction (#28): a Citus worker that fails
//! between PREPARE and COMMIT keeps such a transaction until the coordinator recovers it, and
//! meanwhile serves the configuration before it. The same happens on one server with any
//! client's two-phase commit, which is how this test makes it (scripts/with-cluster.sh sets
//! max_prepared_transactions). The node then judges rows by the old configuration; what it
//! reports or rejects says so and names the remedy, and `_prepared_config_changes()` (which
//! `citus_check` asks every node) names the transactions. Once committed, the new alias applies.
use postgres::{Config, NoTls};
use stage_norm_client_tests::*;
use std::sync::{Arc, Mutex};

#[test]
fn a_prepared_alias_is_named_until_it_is_committed() {
    let db = "sn_prepared";
    let mut admin = fresh_db(db);
    admin
        .batch_execute(
            "CREATE TABLE pw (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('pw', 'stage');
             SELECT stage_norm.set_table_mode('pw', 'warn');
             CREATE TABLE pe (id int PRIMARY KEY, stage text);
             SELECT stage_norm.attach('pe', 'stage');
             SELECT stage_norm.set_table_mode('pe', 'enforce');",
        )
        .unwrap();
    let gid = format!("sn_prepared_{}", std::process::id());
    // Whatever happens below, the prepared transaction goes (it would hold its locks forever).
    struct Rollback(String);
    impl Drop for Rollback {
        fn drop(&mut self) {
            let _ = connect("sn_prepared").batch_execute(&format!("ROLLBACK PREPARED '{}'", self.0));
        }
    }
    let _guard = Rollback(gid.clone());

    let none: Option<String> = admin.query_one("SELECT stage_norm._prepared_config_changes()", &[]).unwrap().get(0);
    assert_eq!(none, None, "no prepared transaction yet");

    let mut preparer = connect(db);
    preparer
        .batch_execute(&format!("BEGIN; SELECT stage_norm.add_alias('Growth Round', 'series-c+'); PREPARE TRANSACTION '{gid}'"))
        .unwrap();

    let named: Option<String> = admin.query_one("SELECT stage_norm._prepared_config_changes()", &[]).unwrap().get(0);
    assert!(named.as_deref().is_some_and(|n| n.starts_with(&format!("{gid} ("))), "names the transaction: {named:?}");

    // warn: the row is stored as it is, and the WARNING says why it may be stale.
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut cfg: Config = dsn_for(db).parse().unwrap();
    cfg.notice_callback(move |n| {
        sink.lock().unwrap().push(format!("{}|{}|{}", n.message(), n.detail().unwrap_or(""), n.hint().unwrap_or("")))
    });
    let mut writer = cfg.connect(NoTls).unwrap();
    writer.batch_execute("INSERT INTO pw VALUES (1, 'Growth Round')").unwrap();
    let seen = notices.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(&format!("before prepared transaction(s) {gid} (")), "DETAIL names it: {}", seen[0]);
    assert!(seen[0].contains("COMMIT PREPARED") && seen[0].contains("recover_prepared_transactions()"), "HINT: {}", seen[0]);

    // enforce: 23514, with the same sentences.
    let err = writer.batch_execute("INSERT INTO pe VALUES (1, 'Growth Round')").unwrap_err();
    let e = err.as_db_error().expect("a server error");
    assert_eq!(e.code().code(), "23514");
    assert!(e.detail().unwrap_or("").contains(&gid), "DETAIL: {:?}", e.detail());
    assert!(e.hint().unwrap_or("").contains("recover_prepared_transactions()"), "HINT: {:?}", e.hint());

    // A value the old configuration knows is not held up (no lookup on the rewrite path).
    writer.batch_execute("INSERT INTO pe VALUES (2, 'Series A ')").unwrap();

    // Committed: the alias applies, and nothing is named any more.
    admin.batch_execute(&format!("COMMIT PREPARED '{gid}'")).unwrap();
    notices.lock().unwrap().clear();
    writer.batch_execute("INSERT INTO pe VALUES (3, 'Growth Round'); INSERT INTO pw VALUES (3, 'Angel')").unwrap();
    let stored: String = writer.query_one("SELECT stage FROM pe WHERE id = 3", &[]).unwrap().get(0);
    assert_eq!(stored, "series-c+");
    let seen = notices.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].contains("prepared transaction"), "nothing pending: {}", seen[0]);
    let none: Option<String> = admin.query_one("SELECT stage_norm._prepared_config_changes()", &[]).unwrap().get(0);
    assert_eq!(none, None);
}
