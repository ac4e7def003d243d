//! Every routine of schema stage_norm called the wrong way (#27 items 4 and 7): with NULL for
//! every argument, and with bad values (the relation 0, empty and unknown names, negative
//! numbers). Whatever they answer, no call may raise SQLSTATE XX000 (an internal error: a Rust
//! panic) or show a Rust backtrace or source location to the client. The routines are read from
//! the catalog, so a routine added later is covered without listing it here.
use stage_norm_client_tests::*;

/// A bad value of each argument type the routines take.
fn bad_value(ty: &str) -> &'static str {
    match ty {
        "regclass" => "0::oid::regclass",
        "oid" => "0::oid",
        "name" | "text" => "''",
        "text[]" | "name[]" => "'{}'",
        "integer" | "bigint" | "smallint" => "-1",
        "double precision" | "real" | "numeric" => "-1",
        "boolean" => "true",
        "jsonb" => "'{\"nope\": 2}'",
        "interval" => "'-1 day'",
        _ => "NULL",
    }
}

#[test]
fn no_routine_panics_on_bad_input() {
    let mut c = fresh_db("sn_misuse");
    let routines: Vec<(String, String, Vec<String>, bool, bool)> = c
        .query(
            "SELECT p.proname::text, p.prokind::text,
                    coalesce(ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t), '{}'),
                    p.provariadic <> 0, p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
               FROM pg_proc p WHERE p.pronamespace = 'stage_norm'::regnamespace ORDER BY 1",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert!(routines.len() > 60, "{}", routines.len());
    let mut calls = 0;
    let mut failures: Vec<String> = Vec::new();
    for (name, kind, types, variadic, is_trigger) in &routines {
        for round in ["null", "bad"] {
            let args: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = if round == "null" { "NULL" } else { bad_value(t) };
                    let v = format!("{v}::{t}");
                    if *variadic && i + 1 == types.len() { format!("VARIADIC {v}") } else { v }
                })
                .collect();
            let call = if kind == "p" {
                format!("CALL stage_norm.{name}({})", args.join(", "))
            } else {
                format!("SELECT stage_norm.{name}({})", args.join(", "))
            };
            // Each call in a transaction of its own, rolled back (a procedure that must run
            // outside one says so: that is an answer too).
            c.batch_execute("BEGIN").unwrap();
            let result = c.batch_execute(&call);
            let _ = c.batch_execute("ROLLBACK");
            calls += 1;
            let Err(err) = result else { continue };
            let db = err.as_db_error().unwrap_or_else(|| panic!("{call}: {err}"));
            let text = format!("{}|{}|{}|{}", db.message(), db.detail().unwrap_or(""), db.hint().unwrap_or(""), db.where_().unwrap_or(""));
            if db.code().code() == "XX000" {
                failures.push(format!("{call}: XX000 {text}"));
            }
            for bad in ["panicked", "backtrace", ".rs:", "RAISE statement option cannot be null"] {
                if text.contains(bad) {
                    failures.push(format!("{call}: {bad:?} in {text}"));
                }
            }
            if *is_trigger && !matches!(db.code().code(), "39P01" | "0A000") {
                failures.push(format!("{call}: {} {text}", db.code().code()));
            }
        }
    }
    assert!(calls > 120, "{calls}");
    assert!(failures.is_empty(), "{} calls went wrong:\n{}", failures.len(), failures.join("\n"));
}
