//! The extension's modules (src/) import one way: no module reaches, directly or through
//! others, back into one that reaches it (docs/development.md, "Where the Rust lives"). Read
//! from the sources, no build and no server: a path `crate::y...`, `crate::{y, ...}` or a
//! `super::` that climbs to the crate root, in any file under src/x.rs or src/x/, is an arrow
//! from x to y (comments left out). Macros exported at the crate root count as their home
//! module's.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MACROS: &[(&str, &str)] = &[("pg_finfo_v1", "server"), ("c_function", "server")];

/// Every `.rs` file under `dir`, with its module path below `src/` (`src/trigger/entry.rs`:
/// `["trigger", "entry"]`; a `mod.rs` is its directory's module).
fn walk(dir: &Path, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            path.push(p.file_name().unwrap().to_string_lossy().to_string());
            walk(&p, path, out);
            path.pop();
        } else if p.extension().is_some_and(|x| x == "rs") {
            let mut m = path.clone();
            if name != "mod" {
                m.push(name);
            }
            out.push((m, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// The text without comments, and with no white space around `::`.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let b = text.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                out.push(c as char);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
            out.push(b[i.min(b.len() - 1)] as char);
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        out.push(c as char);
        i += 1;
    }
    let mut s = out;
    for _ in 0..3 {
        s = s.replace(" ::", "::").replace(":: ", "::").replace("\n::", "::").replace("::\n", "::");
    }
    s
}

/// The first segment of each path a `use` tree or path starting at `rest` names
/// (`{a::{b}, c}` names `a` and `c`; `a::b` names `a`).
fn heads(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(list) = rest.strip_prefix('{') {
        let out = stage_norm_sqlgen::split_top_level(list, '{', '}');
        return out.iter().flat_map(|i| heads(i)).collect();
    }
    vec![rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()]
}

fn modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src");
    let mut files = Vec::new();
    walk(&src, &mut Vec::new(), &mut files);
    let names: BTreeSet<String> = files.iter().filter_map(|f| f.0.first().cloned()).collect();
    let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &files {
        let Some(m) = path.first().cloned() else { continue }; // lib.rs: the crate root
        let code = code_of(text);
        let entry = arrows.entry(m.clone()).or_default();
        let mut targets = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            targets.extend(heads(&code[i + 7..]));
        }
        // super::... from a file of module path `path`: each `super::` goes one level up; from
        // the crate root the next segment is a top-level module.
        for (i, _) in code.match_indices("super::") {
            if i >= 2 && &code[i - 2..i] == "::" {
                continue; // the second of super::super::, counted from the first
            }
            let mut rest = &code[i..];
            let mut level = path.len();
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                level = level.saturating_sub(1);
            }
            if level == 0 {
                targets.extend(heads(rest));
            }
        }
        for t in targets {
            let t = MACROS.iter().find(|(mac, _)| *mac == t).map(|(_, home)| home.to_string()).unwrap_or(t);
            if t != m && names.contains(&t) {
                entry.insert(t);
            }
        }
    }
    arrows
}

#[test]
fn the_parser_sees_every_form() {
    assert_eq!(heads("{encoding::{for_report}, trigger};"), vec!["encoding", "trigger"]);
    assert_eq!(heads("trigger::init()"), vec!["trigger"]);
    assert_eq!(code_of("a // crate::x\nb /* crate::y */ crate :: z"), "a \nb  crate::z");
}

#[test]
fn src_has_no_import_circle() {
    let arrows = modules();
    assert!(arrows.len() >= 10 && arrows.contains_key("trigger"), "{arrows:?}");
    // Depth-first search for a cycle, reporting it.
    fn visit(m: &str, arrows: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|x| x == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for t in arrows.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, arrows, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in arrows.keys() {
        if let Some(c) = visit(m, &arrows, &mut Vec::new(), &mut done) {
            panic!("import circle in src/: {}", c.join(" -> "));
        }
    }
    // the layering docs/development.md describes
    for (low, high) in [("cache", "trigger"), ("stats", "trigger"), ("arrays", "trigger"), ("distributions", "trigger"), ("server", "cache")] {
        assert!(!arrows[low].contains(high), "{low} must not import {high}: {:?}", arrows[low]);
    }
}
