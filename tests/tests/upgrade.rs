//! ALTER EXTENSION stage_norm UPDATE from 0.1.0 (the frozen sql/stage_norm--0.1.0.sql) with
//! this release's shared library: the 0.1.0 database keeps working before the update, with
//! everything in use (triggers, aliases, overrides, counters, a session open across the update);
//! after it the 0.2.0 behaviour applies to triggers attached under 0.1.0; and the upgraded
//! catalog is the fresh install's, object by object.
use postgres::error::SqlState;
use stage_norm_client_tests::*;

/// This session's `session_counters` row of `tbl`: (passed, normalized, warned, rejected,
/// would_normalize, would_reject, unchanged, nulls); zeros when the trigger never ran on it.
fn counters(c: &mut postgres::Client, tbl: &str) -> [i64; 8] {
    c.query_opt(
        "SELECT passed, normalized, warned, rejected, would_normalize, would_reject, unchanged, nulls
           FROM stage_norm.session_counters WHERE table_name = $1::text::regclass",
        &[&tbl],
    )
    .unwrap()
    .map_or([0; 8], |r| std::array::from_fn(|i| r.get(i)))
}

/// The cluster-wide count of one outcome on `tbl` of database sn_upgrade (0.2.0's stats view).
fn cluster_count(c: &mut postgres::Client, tbl: &str, outcome: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(count), 0)::int8 FROM stage_norm.stats
          WHERE datname = 'sn_upgrade' AND table_name = $1 AND outcome = $2",
        &[&tbl, &outcome],
    )
    .unwrap()
    .get(0)
}

/// The values of `tbl`'s stage column by id.
fn stages(c: &mut postgres::Client, tbl: &str) -> Vec<(i32, Option<String>)> {
    c.query(&format!("SELECT id, stage FROM {tbl} ORDER BY id"), &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// A 0.1.0 database in use (triggers, aliases, overrides enforce and off, session counters
/// counting in an application session that stays connected), then ALTER EXTENSION stage_norm
/// UPDATE: the open session keeps working and counting, the overrides still apply, the 0.2.0
/// features work on the tables attached under 0.1.0, and detach works.
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
         SELECT stage_norm.add_alias('Angel', 'pre-seed');
         CREATE TABLE enf (id int PRIMARY KEY, stage text);
         CREATE TABLE offt (id int PRIMARY KEY, stage text);
         SELECT stage_norm.attach('enf', 'stage');
         SELECT stage_norm.attach('offt', 'stage');
         SELECT stage_norm.set_table_mode('enf', 'enforce');
         SELECT stage_norm.set_table_mode('offt', 'off');",
    )
    .unwrap();
    // The new library serves the 0.1.0 SQL objects.
    c.execute("INSERT INTO p VALUES (1, 'Angel'), (2, 'Series A')", &[]).unwrap();
    assert_eq!(normalize(&mut c, "angel").as_deref(), Some("pre-seed"));

    // The application's session, connected before the update and kept open across it.
    let mut w = connect("sn_upgrade");
    w.batch_execute("INSERT INTO enf VALUES (1, 'Series B '), (2, 'angel'), (3, 'seed')").unwrap();
    let e = w.batch_execute("INSERT INTO enf VALUES (4, 'Mezzanine')").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "enforce under 0.1.0: {e}");
    w.batch_execute("INSERT INTO offt VALUES (1, 'Series B '), (2, 'Mezzanine')").unwrap();
    assert_eq!(
        stages(&mut w, "enf"),
        [(1, Some("series-b".into())), (2, Some("pre-seed".into())), (3, Some("seed".into()))]
    );
    assert_eq!(stages(&mut w, "offt"), [(1, Some("Series B ".into())), (2, Some("Mezzanine".into()))], "off: untouched");
    let enf_before = counters(&mut w, "enf");
    println!("0.1.0, the open session's counters of enf: {enf_before:?}, of offt: {:?}", counters(&mut w, "offt"));
    assert_eq!(enf_before, [1, 2, 0, 1, 0, 0, 0, 0], "passed 1 (seed), normalized 2, rejected 1");
    assert_eq!(counters(&mut w, "offt"), [0; 8], "off: the trigger does nothing, counts nothing");
    // 0.1.0 has no stats view; the (new) library counts into shared memory all the same.
    let n: i64 = c.query_one("SELECT count(*) FROM pg_views WHERE schemaname = 'stage_norm' AND viewname = 'stats'", &[]).unwrap().get(0);
    assert_eq!(n, 0, "0.1.0 has no stats view");

    c.batch_execute("ALTER EXTENSION stage_norm UPDATE").unwrap();
    let v: String = c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'", &[]).unwrap().get(0);
    assert_eq!(v, "0.2.0");

    // The overrides survived the update and still apply, in the open session and a new one.
    let modes: Vec<(String, Option<String>, String)> = c
        .query("SELECT table_name::text, override_mode, effective_mode FROM stage_norm.table_modes ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        modes,
        [
            ("enf".into(), Some("enforce".into()), "enforce".into()),
            ("offt".into(), Some("off".into()), "off".into()),
            ("p".into(), None, "warn".into())
        ]
    );
    for (who, s) in [("open", &mut w), ("new", &mut c)] {
        let base = if who == "open" { 10 } else { 20 };
        s.batch_execute(&format!("INSERT INTO enf VALUES ({base}, 'Series A '), ({}, 'Angel')", base + 1)).unwrap();
        let e = s.batch_execute(&format!("INSERT INTO enf VALUES ({}, 'Mezzanine')", base + 2)).unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "{who} session, enforce after the update: {e}");
        assert_eq!(e.as_db_error().and_then(|d| d.column()), Some("stage"));
        s.batch_execute(&format!("INSERT INTO offt VALUES ({base}, 'Series A ')")).unwrap();
    }
    assert_eq!(
        stages(&mut c, "enf")[3..],
        [(10, Some("series-a".into())), (11, Some("pre-seed".into())), (20, Some("series-a".into())), (21, Some("pre-seed".into()))]
    );
    assert_eq!(stages(&mut c, "offt")[2..], [(10, Some("Series A ".into())), (20, Some("Series A ".into()))], "off: untouched");
    // The open session's counters kept counting across the update (0.2.0's view of them).
    let enf_after = counters(&mut w, "enf");
    println!("0.2.0, the open session's counters of enf: {enf_after:?}");
    assert_eq!(enf_after, [1, 4, 0, 2, 0, 0, 0, 0], "before the update plus 2 normalized and 1 rejected");

    // The cluster-wide statistics (new in 0.2.0) count the writes to the 0.1.0-attached tables:
    // the library counted into shared memory before the update too.
    let stats: Vec<(String, String, i64)> = c
        .query(
            "SELECT table_name, outcome, count FROM stage_norm.stats WHERE datname = 'sn_upgrade' AND count > 0 ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    println!("stats after the update: {stats:?}");
    assert_eq!(cluster_count(&mut c, "enf", "normalized"), 2 + 2 + 2, "normalized: 2 before the update, 2 and 2 after");
    assert_eq!(cluster_count(&mut c, "enf", "rejected"), 1 + 1 + 1);
    assert_eq!(cluster_count(&mut c, "enf", "passed"), 1);
    assert_eq!(cluster_count(&mut c, "offt", "normalized") + cluster_count(&mut c, "offt", "unchanged"), 0, "off counts nothing");
    assert_eq!(cluster_count(&mut c, "p", "normalized"), 2, "the partitioned table's writes, under its own name");
    // The latency view and the breakers know the old tables too.
    let n: i64 = c
        .query_one("SELECT count(*) FROM stage_norm.breakers WHERE datname = 'sn_upgrade' AND table_name IN ('enf', 'p')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // 0.2.0's verify and migrate on a table attached under 0.1.0: offt's non-canonical rows.
    let nc: i64 = c.query_one("SELECT (stage_norm.verify('offt', 'stage')->>'non_canonical')::int8", &[]).unwrap().get(0);
    assert_eq!(nc, 4, "Series B, Mezzanine, Series A, Series A");
    c.batch_execute("CALL stage_norm.migrate('offt', 'stage', batch_size => 2)").unwrap();
    let (status, updated, unknown): (String, i64, i64) = {
        let r = c
            .query_one("SELECT status, rows_updated, rows_unknown FROM stage_norm.migration_runs WHERE table_name::text = 'offt'", &[])
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((status.as_str(), updated, unknown), ("finished", 3, 1));
    assert_eq!(
        stages(&mut w, "offt"),
        [(1, Some("series-b".into())), (2, Some("Mezzanine".into())), (10, Some("series-a".into())), (20, Some("series-a".into()))]
    );
    // The stage set (0.2.0) on the old tables, seen by the open session from its next statement.
    c.batch_execute("SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth')")
        .unwrap();
    w.batch_execute("INSERT INTO enf VALUES (30, 'Series D2')").unwrap();
    assert_eq!(stages(&mut w, "enf").last().unwrap().1.as_deref(), Some("series-d"));
    let e = w.batch_execute("INSERT INTO enf VALUES (31, 'Series C+')").unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::CHECK_VIOLATION), "series-c+ is no stage of the new set: {e}");
    c.batch_execute("SELECT stage_norm.reset_stages()").unwrap();
    assert_eq!(counters(&mut w, "enf"), [1, 5, 0, 3, 0, 0, 0, 0]);

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

    // detach works on the tables attached under 0.1.0; the open session writes freely then.
    for t in ["enf", "offt", "p"] {
        let had: bool = c.query_one("SELECT stage_norm.detach($1::text::regclass)", &[&t]).unwrap().get(0);
        assert!(had, "detach({t})");
    }
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'stage_norm%' AND tgrelid IN ('enf'::regclass, 'offt'::regclass, 'p'::regclass, 'p1'::regclass)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no stage_norm trigger left");
    w.batch_execute("INSERT INTO enf VALUES (40, 'Mezzanine')").unwrap();
    assert_eq!(counters(&mut w, "enf"), [1, 5, 0, 3, 0, 0, 0, 0], "no trigger, nothing counted");
    let modes: i64 = c.query_one("SELECT count(*) FROM stage_norm.table_modes WHERE columns IS NULL", &[]).unwrap().get(0);
    assert_eq!(modes, 2, "the overrides stay after detach (enf, offt)");
    drop(w);
    drop(c);
    admin.batch_execute("DROP DATABASE sn_upgrade WITH (FORCE)").unwrap();
}

/// Every object of the extension, described by its definition (not just its name): functions
/// with their signature, result, language, volatility, strictness, parallel label, security,
/// settings, source and grants; tables and views with their columns, defaults, constraints,
/// indexes, triggers, policies, grants and view text; types, event triggers, comments, the extension's
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
  SELECT format('policy %s on %s cmd=%s permissive=%s roles=%s using=%s check=%s', po.polname, po.polrelid::regclass,
                po.polcmd, po.polpermissive, po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid),
                pg_get_expr(po.polwithcheck, po.polrelid))
    FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid, nsp WHERE c.relnamespace = nsp.oid
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

/// The upgraded catalog matches a fresh 0.2.0 install, object by object. The upgrade script is
/// generated (tools/sqlgen, scripts/upgrade-script.sh); a change to a 0.1.0 object that
/// sql/upgrade/pre.sql or post.sql handles wrongly fails here.
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
