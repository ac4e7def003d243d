//! The extension's modules (src/) import one way: no module reaches, directly or through
//! others, back into one that reaches it (docs/development.md, "Where the Rust lives"). Read
//! from the sources, no build and no server: a `crate::x` path in src/x.rs or src/x/*.rs is an
//! arrow from x's module to x. Macros exported at the crate root count as their home module's.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MACROS: &[(&str, &str)] = &[("pg_finfo_v1", "server"), ("c_function", "server")];

fn modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap().flatten() {
                files.push((p.file_name().unwrap().to_string_lossy().to_string(), f.path()));
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push((p.file_stem().unwrap().to_string_lossy().to_string(), p));
        }
    }
    let names: BTreeSet<String> = files.iter().map(|f| f.0.clone()).collect();
    let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, p) in &files {
        let text = std::fs::read_to_string(p).unwrap();
        let entry = arrows.entry(m.clone()).or_default();
        // crate::x and crate::{x, y}
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            let targets: Vec<String> = if let Some(list) = rest.strip_prefix('{') {
                list.split('}').next().unwrap_or("").split(',').map(|s| s.trim().split("::").next().unwrap_or("").to_string()).collect()
            } else {
                vec![rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()]
            };
            for t in targets {
                let t = MACROS.iter().find(|(mac, _)| *mac == t).map(|(_, home)| home.to_string()).unwrap_or(t);
                if t != *m && names.contains(&t) {
                    entry.insert(t);
                }
            }
        }
    }
    arrows
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
