//! ALTER EXTENSION stage_norm UPDATE from 0.1.0 (the frozen sql/stage_norm--0.1.0.sql) with
//! this release's shared library: the 0.1.0 database keeps working before the update, and after
//! it the 0.2.0 behaviour applies to triggers attached under 0.1.0; and the upgraded catalog is
//! the fresh install's, object by object.
use postgres::error::SqlState;
use stage_norm_client_tests::*;

#[test]
fn update_from_0_1_0() {
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS sn_upgrade WITH (FORCE)").unwrap();
    admin.batch_execute("CREATE DATABASE sn_upgrade").unwrap();
    let mut c = connect("sn_upgrade");
    c.batch_execute(
        "CREATE EXTENSION stage_norm VERSION '0.1.0';
         CREATE TABLE p (id int, stage text) PARTITION BY RANGE (id);
         CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
         SELECT stage_norm.attach('p', 'stage');
         SELECT stage_norm.add_alias('Angel', 'pre-seed');",
    )
    .unwrap();
    // The new library serves the 0.1.0 SQL objects.
    c.execute("INSERT INTO p VALUES (1, 'Angel'), (2, 'Series A')", &[]).unwrap();
    assert_eq!(normalize(&mut c, "angel").as_deref(), Some("pre-seed"));
    c.batch_execute("ALTER EXTENSION stage_norm UPDATE").unwrap();
    let v: String = c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'", &[]).unwrap().get(0);
    assert_eq!(v, "0.2.0");
    // The trigger attached under 0.1.0 now depends on its column; partitions got the summary.
    let e = c.batch_execute("ALTER TABLE p DROP COLUMN stage").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'p1'::regclass AND tgname = 'stage_norm_summary'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    c.batch_execute("ALTER TABLE p RENAME COLUMN stage TO phase").unwrap();
    c.execute("INSERT INTO p VALUES (3, 'seed round')", &[]).unwrap();
    let rows: Vec<String> = c.query("SELECT phase FROM p ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, ["pre-seed", "series-a", "seed"]);
}

/// Every object of the extension, described by its definition (not just its name): functions
/// with their signature, result, language, volatility, strictness, parallel label, security,
/// settings, source and grants; tables and views with their columns, defaults, constraints,
/// indexes, triggers, grants and view text; types, event triggers, comments, the extension's
/// members and its pg_dump configuration.
const CATALOG: &str = r#"
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'stage_norm'),
     nsp AS (SELECT 'stage_norm'::regnamespace::oid AS oid)
SELECT x FROM (
  SELECT format('function %s -> %s lang=%s vol=%s strict=%s parallel=%s secdef=%s leakproof=%s config=%s src=%s bin=%s acl=%s',
                p.oid::regprocedure, pg_get_function_result(p.oid), l.lanname, p.provolatile, p.proisstrict,
                p.proparallel, p.prosecdef, p.proleakproof, p.proconfig, md5(p.prosrc), p.probin, p.proacl) AS x
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang, nsp WHERE p.pronamespace = nsp.oid
  UNION ALL
  SELECT format('function %s args=%s', p.oid::regprocedure, pg_get_function_arguments(p.oid))
    FROM pg_proc p, nsp WHERE p.pronamespace = nsp.oid
  UNION ALL
  SELECT format('relation %s kind=%s persistence=%s rls=%s acl=%s options=%s', c.oid::regclass, c.relkind,
                c.relpersistence, c.relrowsecurity, c.relacl, c.reloptions)
         || coalesce(' view=' || md5(pg_get_viewdef(c.oid)), '')
    FROM pg_class c, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  SELECT format('column %s.%s %s notnull=%s default=%s acl=%s', a.attrelid::regclass, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attacl)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum, nsp
   WHERE c.relnamespace = nsp.oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('constraint %s %s %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
    FROM pg_constraint co, nsp WHERE co.connamespace = nsp.oid
  UNION ALL
  SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid, nsp WHERE c.relnamespace = nsp.oid
  UNION ALL
  SELECT format('trigger %s', pg_get_triggerdef(t.oid))
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, nsp WHERE c.relnamespace = nsp.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT format('event trigger %s on %s tags=%s -> %s enabled=%s', e.evtname, e.evtevent, e.evttags, e.evtfoid::regproc, e.evtenabled)
    FROM pg_event_trigger e
  UNION ALL
  SELECT format('type %s type=%s', t.oid::regtype, t.typtype)
    FROM pg_type t, nsp WHERE t.typnamespace = nsp.oid AND t.typtype <> 'c' AND t.typcategory <> 'A'
  UNION ALL
  SELECT format('member %s', pg_describe_object(d.classid, d.objid, d.objsubid))
    FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL
  SELECT format('comment %s: %s', pg_describe_object(ds.classoid, ds.objoid, ds.objsubid), ds.description)
    FROM pg_description ds JOIN pg_depend d ON d.classid = ds.classoid AND d.objid = ds.objoid, ext
   WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL
  SELECT format('dump config %s where %L', u.c::regclass, u.cond)
    FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond) WHERE e.extname = 'stage_norm'
) s ORDER BY x"#;

fn catalog(c: &mut postgres::Client) -> Vec<String> {
    c.query(CATALOG, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The upgraded catalog matches a fresh 0.2.0 install, object by object. A SQL change that
/// forgets its step in sql/stage_norm--0.1.0--0.2.0.sql fails here.
#[test]
fn upgraded_catalog_matches_fresh_install() {
    let mut admin = connect("postgres");
    for db in ["sn_cat_fresh", "sn_cat_upgraded"] {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    }
    let mut fresh = connect("sn_cat_fresh");
    fresh.batch_execute("CREATE EXTENSION stage_norm").unwrap();
    let mut up = connect("sn_cat_upgraded");
    up.batch_execute("CREATE EXTENSION stage_norm VERSION '0.1.0'; ALTER EXTENSION stage_norm UPDATE TO '0.2.0'").unwrap();
    let (a, b) = (catalog(&mut fresh), catalog(&mut up));
    assert!(a.len() > 100, "the catalog query found only {} lines", a.len());
    let only_fresh: Vec<_> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_up: Vec<_> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_fresh.is_empty() && only_up.is_empty(),
        "fresh install and upgrade differ:\n only in the fresh install:\n  {}\n only after the upgrade:\n  {}",
        only_fresh.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        only_up.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
    drop((fresh, up));
    for db in ["sn_cat_fresh", "sn_cat_upgraded"] {
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
