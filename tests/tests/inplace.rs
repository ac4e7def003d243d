//! The trigger rewrites a governed value inside the row when it can (src/inplace.rs: same size,
//! or a short value that shrinks, moving the columns after it). These tests build random table
//! layouts, write the same rows through the trigger and, without it, through PostgreSQL's own
//! tuple building (`normalize_stage_builtin` in the statement), and require every stored row to
//! be identical, before and after UPDATEs, and the heap to pass amcheck's `verify_heapam`.
//!
//! Some layouts also carry a governed jsonb stage distribution and/or a governed text[] or
//! varchar(40)[] stage array beside the governed text columns (never rewritten inside the row:
//! a new datum replaces them); their reference values come from `normalize_stage_distribution`
//! and `normalize_stages` in the statement. Rows are compared as text and as stored bytes
//! (pageinspect: each attribute, the null bitmap, and the whole tuple data when no value was
//! toasted differently because of the tables' different storage settings).
use postgres::Client;
use stage_norm_client_tests::*;
use std::io::Write;

/// xorshift64*: reproducible layouts and rows (the seed is in every assertion message).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Known labels: canonical, same size, shrinking, growing, long (4-byte header), non-ASCII; at
/// most `max` characters (char(n) would otherwise truncate them into unknown labels).
fn label(r: &mut Rng, max: usize, custom: bool) -> String {
    // Known in the 7-stage set of `rows_match_with_a_custom_set` (canonical values of 6 and 8
    // bytes: growth, series-d).
    const C: &[&str] = &[
        "growth", "Growth", "GROWTH", "growth round", "Growth  ", "series-d", "Series D", "series d2", "SERIES-D", "Series C",
        "series-c", "seed", "Seed Round", "pre seed", "series a", "seriesB", "Ｇｒｏｗｔｈ",
    ];
    const L: &[&str] = &[
        "seed", "pre-seed", "series-a", "series-b", "series-c+", // canonical
        "Seed", "SEED", "pre_seed", "PRE-SEED", "Pre Seed", "series a", "SERIES B", "Series C+", // same size
        "Series A ", "Seed Round", "seed round", "Series C Plus", "series b2", "Series A-2 Round", "  Seed  ", // shrink
        "seriesB", "Series D", "Series E", "preseed", "seriesa", // grow
        "Ｓｅｒｉｅｓ　Ａ", "pre−seed", "Series B–1", // non-ASCII
    ];
    let list = if custom { C } else { L };
    loop {
        let l = match r.below(list.len() + 1) {
            i if i < list.len() => list[i].to_string(),
            _ => format!("{}{}", if custom { "Growth" } else { "Series A" }, " ".repeat(130 + r.below(40))), // stored with a 4-byte header
        };
        if l.chars().count() <= max {
            return l;
        }
    }
}

/// Known keys of a distribution by stage (default set, or the 7-stage custom set): canonical
/// names, same size, shrinking, growing, non-ASCII, and one with a 4-byte header.
fn stage_variants(custom: bool) -> Vec<Vec<String>> {
    let long = |s: &str| format!("{s}{}", " ".repeat(140));
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    if custom {
        vec![
            v(&["pre-seed", "pre seed"]),
            v(&["seed", "Seed Round"]),
            v(&["series-a", "series a"]),
            v(&["series-b", "seriesB"]),
            v(&["series-c", "Series C"]),
            v(&["series-d", "Series D", "SERIES-D", "series d2"]),
            [v(&["growth", "Growth", "GROWTH", "growth round", "Growth  ", "Ｇｒｏｗｔｈ"]), vec![long("Growth")]].concat(),
        ]
    } else {
        vec![
            v(&["pre-seed", "Pre Seed", "pre_seed", "PRE-SEED", "preseed", "pre−seed"]),
            v(&["seed", "Seed", "SEED", "Seed Round", "  Seed  ", "seed round"]),
            [v(&["series-a", "series a", "Series A ", "seriesa", "Ｓｅｒｉｅｓ　Ａ", "Series A-2 Round"]), vec![long("Series A")]].concat(),
            v(&["series-b", "SERIES B", "seriesB", "series b2", "Series B–1"]),
            v(&["series-c+", "Series C+", "Series C Plus", "Series D", "Series E"]),
        ]
    }
}

/// A valid stage distribution (JSON text) with known keys, some naming the same stage (merged
/// by the trigger), weights of 1 to 8 decimals in several spellings that sum to 1, sometimes
/// short of 1 by less than 1e-6.
fn distribution(r: &mut Rng, custom: bool) -> String {
    let variants = stage_variants(custom);
    let n_stages = 1 + r.below(variants.len().min(4));
    let mut stages: Vec<usize> = Vec::new();
    while stages.len() < n_stages {
        let s = r.below(variants.len());
        if !stages.contains(&s) {
            stages.push(s);
        }
    }
    let mut keys: Vec<String> = Vec::new();
    for &s in &stages {
        for _ in 0..if r.chance(25) { 2 } else { 1 } {
            let k = variants[s][r.below(variants[s].len())].clone();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let scale = 1 + r.below(8) as u32;
    let units = 10u64.pow(scale);
    let mut cuts: Vec<u64> = (1..keys.len()).map(|_| r.next() % (units + 1)).collect();
    cuts.sort_unstable();
    let mut parts: Vec<u64> = Vec::new();
    let mut prev = 0;
    for c in cuts.into_iter().chain([units]) {
        parts.push(c - prev);
        prev = c;
    }
    if scale >= 7 && r.chance(20) {
        let last = parts.last_mut().unwrap();
        *last -= (1 + r.below(9) as u64).min(*last);
    }
    let weights = parts.iter().map(|&p| match r.below(4) {
        0 => format!("{p}e-{scale}"),
        1 => {
            let s = format!("{}.{:0w$}", p / units, p % units, w = scale as usize);
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        _ => format!("{}.{:0w$}", p / units, p % units, w = scale as usize),
    });
    let pairs: Vec<String> = keys.iter().zip(weights).map(|(k, w)| format!("\"{k}\": {w}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A stage array literal of known labels (NULL elements among them): empty, one dimension,
/// with a lower bound, or two dimensions.
fn stage_array(r: &mut Rng, max: usize, custom: bool) -> String {
    let elems = |r: &mut Rng, n: usize| -> String {
        let e: Vec<String> =
            (0..n).map(|_| if r.chance(15) { "NULL".to_string() } else { format!("\"{}\"", label(r, max, custom)) }).collect();
        e.join(",")
    };
    match r.below(10) {
        0 => "{}".to_string(),
        1 => {
            let w = 1 + r.below(3);
            let rows: Vec<String> = (0..2).map(|_| format!("{{{}}}", elems(r, w))).collect();
            format!("{{{}}}", rows.join(","))
        }
        2 => {
            let n = 1 + r.below(4);
            format!("[0:{}]={{{}}}", n - 1, elems(r, n))
        }
        _ => {
            let n = 1 + r.below(6);
            format!("{{{}}}", elems(r, n))
        }
    }
}

/// Other column types: (SQL type, value generator) covering every alignment and storage kind.
fn other_value(ty: &str, r: &mut Rng) -> String {
    match ty {
        "smallint" => (r.below(60000) as i64 - 30000).to_string(),
        "integer" => (r.next() as i32).to_string(),
        "bigint" => (r.next() as i64).to_string(),
        "boolean" => (r.chance(50)).to_string(),
        "double precision" => format!("{}.{}", r.below(100000), r.below(1000)),
        "numeric" => format!("{}.{}", r.next() % 10u64.pow(1 + r.below(15) as u32), r.below(10000)),
        "\"char\"" => ((b'a' + r.below(26) as u8) as char).to_string(),
        "char(3)" => "ab".to_string(),
        "date" => format!("20{:02}-0{}-1{}", r.below(99), 1 + r.below(9), r.below(10)),
        "interval" => format!("{} days {} seconds", r.below(1000), r.below(86400)),
        "uuid" => format!("{:016x}{:016x}", r.next(), r.next()),
        "integer[]" => format!("{{{},{}}}", r.below(1000), r.below(1000)),
        "bytea" => format!("\\x{}", "ab".repeat(r.below(200))),
        "timestamptz" => format!("2026-0{}-1{} 12:00:00+00", 1 + r.below(9), r.below(10)),
        // text of 0..300 bytes: short and 4-byte headers, and sometimes > 2 kB (TOASTed when stored)
        "text" => {
            if r.chance(5) {
                (0..3000).map(|_| format!("{:x}", r.next() % 16)).collect()
            } else {
                "x".repeat(r.below(300))
            }
        }
        _ => unreachable!("{ty}"),
    }
}

const OTHER_TYPES: &[&str] = &[
    "smallint", "integer", "bigint", "boolean", "double precision", "numeric", "\"char\"", "char(3)", "date",
    "interval", "uuid", "integer[]", "bytea", "timestamptz", "text",
];
/// Governed column types, domains included (their CHECKs accept every label and stage, so that
/// both paths store the same rows; refusing domains are pg_test/sql/integrity.sql's).
const GOVERNED_TYPES: &[&str] = &["text", "varchar(40)", "char(12)", "varchar", "text", "stage_d", "stage_vd"];
/// Fixed-length types (every other column is a varlena).
const FIXED_TYPES: &[&str] =
    &["smallint", "integer", "bigint", "boolean", "double precision", "\"char\"", "date", "interval", "uuid", "timestamptz"];
const DOMAINS: &str = "CREATE DOMAIN stage_d AS text CHECK (octet_length(VALUE) < 1000);
     CREATE DOMAIN stage_vd AS varchar(40) CHECK (VALUE <> 'never');";

struct Layout {
    /// (name, type, governed)
    cols: Vec<(String, String, bool)>,
    /// Labels from the custom stage set (and a reference through the STABLE normalizer, which
    /// follows it), or from the default set (reference: the IMMUTABLE built-in normalizer).
    custom: bool,
}

impl Layout {
    fn random(r: &mut Rng, custom: bool) -> Layout {
        let n_other = r.below(9);
        let n_gov = 1 + r.below(3);
        let mut cols: Vec<(String, String, bool)> = Vec::new();
        for i in 0..n_other {
            cols.push((format!("o{i}"), OTHER_TYPES[r.below(OTHER_TYPES.len())].to_string(), false));
        }
        for i in 0..n_gov {
            let at = r.below(cols.len() + 1);
            cols.insert(at, (format!("g{i}"), GOVERNED_TYPES[r.below(GOVERNED_TYPES.len())].to_string(), true));
        }
        // A governed distribution and/or stage array in some layouts.
        if r.chance(50) {
            let at = r.below(cols.len() + 1);
            cols.insert(at, ("j0".to_string(), "jsonb".to_string(), true));
        }
        if r.chance(50) {
            let at = r.below(cols.len() + 1);
            let t = if r.chance(50) { "text[]" } else { "varchar(40)[]" };
            cols.insert(at, ("a0".to_string(), t.to_string(), true));
        }
        Layout { cols, custom }
    }

    /// Column `i` is a governed distribution.
    fn is_dist(&self, i: usize) -> bool {
        self.cols[i].2 && self.cols[i].1 == "jsonb"
    }

    /// Column `i` is a governed stage array.
    fn is_array(&self, i: usize) -> bool {
        self.cols[i].2 && self.cols[i].1.ends_with("[]")
    }

    fn create(&self, c: &mut Client, table: &str, trigger: bool) {
        let defs: Vec<String> = self.cols.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
        c.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, {})", defs.join(", "))).unwrap();
        // Wide values out of line uncompressed in one case, compressed in the other.
        for (n, t, _) in &self.cols {
            if t == "text" && trigger {
                c.batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN {n} SET STORAGE EXTERNAL")).unwrap();
            }
        }
        if trigger {
            let gov: Vec<String> = self.cols.iter().filter(|c| c.2).map(|c| format!("'{}'", c.0)).collect();
            c.batch_execute(&format!("SELECT stage_norm.attach('{table}', {})", gov.join(", "))).unwrap();
        }
        // A PL/pgSQL BEFORE UPDATE trigger that fires before stage_norm_normalize (its name sorts
        // first) and changes the governed column g0 whatever the statement's SET list says: the
        // trigger must still see and normalize it. The reference normalizes it itself.
        let expr = if trigger { "upper(NEW.g0)".to_string() } else { format!("{}(upper(NEW.g0))", self.reference()) };
        c.batch_execute(&format!(
            "CREATE FUNCTION {table}_upper() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.g0 := {expr}; RETURN NEW; END $$;
             CREATE TRIGGER a_upper BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_upper();"
        ))
        .unwrap();
    }

    /// One row's values: None is NULL.
    fn row(&self, r: &mut Rng) -> Vec<Option<String>> {
        self.cols
            .iter()
            .enumerate()
            .map(|(i, (_, t, gov))| {
                if r.chance(15) {
                    None
                } else if self.is_dist(i) {
                    Some(distribution(r, self.custom))
                } else if self.is_array(i) {
                    Some(stage_array(r, if t.starts_with("varchar") { 40 } else { usize::MAX }, self.custom))
                } else if *gov {
                    Some(label(r, if t.starts_with("char") { 12 } else { usize::MAX }, self.custom))
                } else {
                    Some(other_value(t, r))
                }
            })
            .collect()
    }

    fn reference(&self) -> &'static str {
        if self.custom {
            "stage_norm.normalize_stage"
        } else {
            "stage_norm.normalize_stage_builtin"
        }
    }

    /// `value::type`, normalized with the built-in rules for the reference table.
    fn literal(&self, i: usize, v: &Option<String>, reference: bool) -> String {
        let (_, t, gov) = &self.cols[i];
        match v {
            None => format!("NULL::{t}"),
            Some(s) => {
                let lit = format!("'{}'", s.replace('\'', "''"));
                if reference && self.is_dist(i) {
                    format!("stage_norm.normalize_stage_distribution({lit}::jsonb)")
                } else if reference && self.is_array(i) {
                    format!("stage_norm.normalize_stages({lit}::{t})::{t}")
                } else if *gov && reference {
                    format!("{}({lit})::{t}", self.reference())
                } else {
                    format!("{lit}::{t}")
                }
            }
        }
    }
}

fn rows_as_text(c: &mut Client, table: &str) -> Vec<(i64, String)> {
    c.query(&format!("SELECT id, t::text FROM {table} t ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A live tuple as stored: (id, HEAP_HASNULL | HEAP_HASVARWIDTH, t_hoff, null bitmap, the
/// tuple's data, each attribute's bytes).
type RawRow = (i64, i32, i16, Option<String>, Vec<u8>, Vec<Option<Vec<u8>>>);

fn raw_rows(c: &mut Client, table: &str) -> Vec<RawRow> {
    c.query(
        &format!(
            "WITH live AS (SELECT id, ((ctid::text::point)[0])::int AS blk, ((ctid::text::point)[1])::int AS lp FROM {table})
             SELECT l.id, i.t_infomask & 3, i.t_hoff, i.t_bits, i.t_data,
                    tuple_data_split('{table}'::regclass, i.t_data, i.t_infomask, i.t_infomask2, i.t_bits)
               FROM (SELECT DISTINCT blk FROM live) b
               CROSS JOIN LATERAL heap_page_items(get_raw_page('{table}', b.blk)) i
               JOIN live l ON l.blk = b.blk AND l.lp = i.lp
              ORDER BY l.id"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

/// A stored varlena that is out of line or compressed: the two tables' storage settings differ
/// (text columns are EXTERNAL in t_trig), so the toaster may treat the same row differently.
fn toasted(v: &[u8]) -> bool {
    v.first().is_some_and(|&b| b == 0x01 || b & 0x03 == 0x02)
}

/// What amcheck's `verify_heapam` finds wrong in `table`'s heap, one line per problem.
fn heap_problems(c: &mut Client, table: &str) -> Vec<String> {
    c.query(&format!("SELECT format('%s/%s/%s: %s', blkno, offnum, attnum, msg) FROM verify_heapam('{table}')"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_same(c: &mut Client, layout: &Layout, seed: u64, step: &str) {
    let got = rows_as_text(c, "t_trig");
    let want = rows_as_text(c, "t_ref");
    assert_eq!(got.len(), want.len(), "seed {seed}, {step}: row counts");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "seed {seed}, {step}: stored row differs from PostgreSQL's own");
    }
    let got = raw_rows(c, "t_trig");
    let want = raw_rows(c, "t_ref");
    assert_eq!(got.len(), want.len(), "seed {seed}, {step}: live tuples");
    for (g, w) in got.iter().zip(&want) {
        let id = g.0;
        assert_eq!(g.0, w.0, "seed {seed}, {step}: live tuples");
        assert_eq!(g.5.len(), layout.cols.len() + 1, "seed {seed}, {step}, id {id}: attributes");
        let mut differently_toasted = false;
        for k in 0..g.5.len() {
            let varlena = k > 0 && !FIXED_TYPES.contains(&layout.cols[k - 1].1.as_str());
            let name = if k == 0 { "id" } else { layout.cols[k - 1].0.as_str() };
            match (&g.5[k], &w.5[k]) {
                (Some(a), Some(b)) if varlena && (toasted(a) || toasted(b)) => differently_toasted |= a != b,
                (a, b) => assert!(a == b, "seed {seed}, {step}, id {id}: stored bytes of {name} differ: {a:x?} vs {b:x?}"),
            }
        }
        assert_eq!((g.1, g.2, &g.3), (w.1, w.2, &w.3), "seed {seed}, {step}, id {id}: tuple header (varwidth/null flags, t_hoff, null bitmap)");
        if !differently_toasted {
            assert!(g.4 == w.4, "seed {seed}, {step}, id {id}: tuple data differs (alignment padding?)");
        }
    }
    let corrupt = heap_problems(c, "t_trig");
    assert!(corrupt.is_empty(), "seed {seed}, {step}: verify_heapam: {corrupt:?}");
}

fn run_layout(c: &mut Client, seed: u64, custom: bool) {
    let mut r = Rng(seed);
    let layout = Layout::random(&mut r, custom);
    c.batch_execute("DROP TABLE IF EXISTS t_trig, t_ref; DROP FUNCTION IF EXISTS t_trig_upper, t_ref_upper").unwrap();
    layout.create(c, "t_trig", true);
    layout.create(c, "t_ref", false);
    let names: Vec<&str> = layout.cols.iter().map(|c| c.0.as_str()).collect();
    let mut next_id = 1i64;

    // Multi-row INSERTs.
    for _ in 0..4 {
        let mut trig = Vec::new();
        let mut refr = Vec::new();
        for _ in 0..25 {
            let row = layout.row(&mut r);
            let t: Vec<String> = row.iter().enumerate().map(|(i, v)| layout.literal(i, v, false)).collect();
            let f: Vec<String> = row.iter().enumerate().map(|(i, v)| layout.literal(i, v, true)).collect();
            trig.push(format!("({next_id}, {})", t.join(", ")));
            refr.push(format!("({next_id}, {})", f.join(", ")));
            next_id += 1;
        }
        let cols = names.join(", ");
        c.batch_execute(&format!("INSERT INTO t_trig (id, {cols}) VALUES {}", trig.join(", "))).unwrap();
        c.batch_execute(&format!("INSERT INTO t_ref (id, {cols}) VALUES {}", refr.join(", "))).unwrap();
    }
    // COPY (its own slot handling); the reference gets the normalized values through INSERT.
    {
        let mut data = String::new();
        let mut refr = Vec::new();
        for _ in 0..25 {
            let row = layout.row(&mut r);
            let fields: Vec<String> =
                row.iter().map(|v| v.as_ref().map_or_else(|| "\\N".to_string(), |s| s.replace('\\', "\\\\"))).collect();
            data.push_str(&format!("{next_id}\t{}\n", fields.join("\t")));
            let f: Vec<String> = row.iter().enumerate().map(|(i, v)| layout.literal(i, v, true)).collect();
            refr.push(format!("({next_id}, {})", f.join(", ")));
            next_id += 1;
        }
        let mut w = c.copy_in(&format!("COPY t_trig (id, {}) FROM STDIN", names.join(", "))).unwrap();
        w.write_all(data.as_bytes()).unwrap();
        w.finish().unwrap();
        c.batch_execute(&format!("INSERT INTO t_ref (id, {}) VALUES {}", names.join(", "), refr.join(", "))).unwrap();
    }
    assert_same(c, &layout, seed, "insert");

    // UPDATEs: governed and other columns, some rows keep their value; then ON CONFLICT DO UPDATE.
    for round in 0..3 {
        let i = r.below(layout.cols.len());
        let v = layout.row(&mut r)[i].clone();
        let (name, _, _) = &layout.cols[i];
        let modulo = 2 + r.below(3);
        for (table, reference) in [("t_trig", false), ("t_ref", true)] {
            c.batch_execute(&format!(
                "UPDATE {table} SET {name} = {} WHERE id % {modulo} = {}",
                layout.literal(i, &v, reference),
                round % modulo
            ))
            .unwrap();
        }
        assert_same(c, &layout, seed, &format!("update {round} of {name}"));
    }
    let row = layout.row(&mut r);
    let set: Vec<String> = names.iter().map(|n| format!("{n} = EXCLUDED.{n}")).collect();
    for (table, reference) in [("t_trig", false), ("t_ref", true)] {
        let vals: Vec<String> = row.iter().enumerate().map(|(i, v)| layout.literal(i, v, reference)).collect();
        c.batch_execute(&format!(
            "INSERT INTO {table} (id, {}) SELECT g, {} FROM generate_series(1, {next_id}, 3) g
             ON CONFLICT (id) DO UPDATE SET {}",
            names.join(", "),
            vals.join(", "),
            set.join(", ")
        ))
        .unwrap();
    }
    assert_same(c, &layout, seed, "insert on conflict do update");
}

/// 60 random layouts (1 to 3 governed columns, domains among them, and in about half of them a
/// governed jsonb distribution and/or a governed text[]/varchar(40)[] stage array, among up to
/// 8 others of 15 types, NULLs, wide and TOASTed values; a PL/pgSQL trigger before stage_norm's
/// that changes a governed value on UPDATE); INSERT, COPY, UPDATE, ON CONFLICT DO UPDATE.
#[test]
fn rows_match_postgres_own_tuple_building() {
    let mut c = fresh_db("sn_inplace");
    c.batch_execute("CREATE EXTENSION amcheck; CREATE EXTENSION pageinspect; SET stage_norm.mode = enforce").unwrap();
    c.batch_execute(DOMAINS).unwrap();
    for seed in 1..=60u64 {
        run_layout(&mut c, seed * 0x9E37_79B9_7F4A_7C15, false);
    }
}

/// The same with a 7-stage custom set (pre-seed, seed, series-a, series-b, series-c, series-d,
/// growth): canonical values of new lengths, rewritten in place or not.
#[test]
fn rows_match_with_a_custom_set() {
    let mut c = fresh_db("sn_inplace_custom");
    c.batch_execute("CREATE EXTENSION amcheck; CREATE EXTENSION pageinspect; SET stage_norm.mode = enforce").unwrap();
    c.batch_execute(DOMAINS).unwrap();
    c.batch_execute("SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth')")
        .unwrap();
    for seed in 1..=30u64 {
        run_layout(&mut c, seed * 0xD1B5_4A32_D192_ED03, true);
    }
}

/// A dropped column after the governed one (old rows still carry its bytes) and a column added
/// later (old rows do not have it at all).
#[test]
fn dropped_and_added_columns() {
    let mut c = fresh_db("sn_inplace_ddl");
    c.batch_execute(
        "CREATE EXTENSION amcheck; SET stage_norm.mode = enforce;
         CREATE TABLE t (id int PRIMARY KEY, stage text, gone text, n int8, tail text);
         SELECT stage_norm.attach('t', 'stage');
         INSERT INTO t SELECT i, 'Seed Round', repeat('g', i), i, 'tail' || i FROM generate_series(1, 50) i;
         ALTER TABLE t DROP COLUMN gone;
         ALTER TABLE t ADD COLUMN later text DEFAULT 'd';
         INSERT INTO t SELECT i, 'Series A Round', i, 'tail' || i, 'L' || i FROM generate_series(51, 100) i;
         UPDATE t SET stage = 'seed round' WHERE id % 2 = 0;
         UPDATE t SET stage = 'PRE_SEED' WHERE id % 3 = 0;",
    )
    .unwrap();
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM t WHERE stage <> CASE WHEN id % 3 = 0 THEN 'pre-seed'
                 WHEN id % 2 = 0 THEN 'seed' WHEN id <= 50 THEN 'seed' ELSE 'series-a' END
               OR n <> id OR tail <> 'tail' || id OR later <> CASE WHEN id <= 50 THEN 'd' ELSE 'L' || id END",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    let corrupt: i64 = c.query_one("SELECT count(*) FROM verify_heapam('t')", &[]).unwrap().get(0);
    assert_eq!(corrupt, 0);
}

/// Two governed values in one row, the first shrinking inside the row and the second growing:
/// the entry point makes the shrink (moving the second value down), and the growing value must
/// then go to PostgreSQL's own tuple building, never to a copy of the row made from its old
/// position (found by an independent review: a byte of the moved value was read as its header,
/// and the row stored `3late-stage-growth-equ` with a length past its columns). Labels whose
/// bytes, once moved, look like a short header are the dangerous ones (`-` is 0x2D: a 1-byte
/// header of 22 bytes).
#[test]
fn a_shrink_before_a_growing_value() {
    let mut c = fresh_db("sn_inplace_shrink_grow");
    c.batch_execute(
        "CREATE EXTENSION amcheck; SET stage_norm.mode = enforce;
         SELECT stage_norm.set_stages('seed', 'late-stage-growth-equity');
         CREATE TABLE t (id int8 PRIMARY KEY, a text, b text, n int8);
         SELECT stage_norm.attach('t', 'a', 'b');
         CREATE TABLE t2 (id int PRIMARY KEY, a text, b text);
         SELECT stage_norm.attach('t2', 'a', 'b');",
    )
    .unwrap();
    let shrinking = ["Seed ", "Seed  ", " SEED  ", "seed     "];
    let growing = ["-LateStageGrowthEquity", "LateStageGrowthEquity", "_LateStageGrowthEquity", "-Late-StageGrowthEquity", "- LateStageGrowthEquity"];
    let mut id = 0i32;
    for a in shrinking {
        for b in growing {
            id += 1;
            c.execute("INSERT INTO t VALUES ($1, $2, $3, $1)", &[&(id as i64), &a, &b]).unwrap();
            c.execute("INSERT INTO t2 VALUES ($1, $2, $3)", &[&(id as i32), &a, &b]).unwrap();
        }
    }
    for table in ["t", "t2"] {
        let bad: Vec<String> = c
            .query(
                &format!(
                    "SELECT format('%s: %L %L', id, a, b) FROM {table} r
                      WHERE a IS DISTINCT FROM 'seed' OR b IS DISTINCT FROM 'late-stage-growth-equity'
                         OR (to_jsonb(r.*) ? 'n' AND (to_jsonb(r.*)->>'n')::int8 IS DISTINCT FROM id) ORDER BY id"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(bad.is_empty(), "{table}: rows stored wrong: {bad:?}");
        let corrupt = heap_problems(&mut c, table);
        assert!(corrupt.is_empty(), "{table}: verify_heapam: {corrupt:?}");
    }
    let rows: i64 = c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(rows, id as i64);
}
