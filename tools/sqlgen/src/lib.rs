//! stage_norm's upgrade script, built from the install script (docs/development.md, "Where SQL
//! lives").
//!
//! Every SQL object of a release has one home: its topic file under `sql/` (or its Rust
//! `#[pg_extern]`), from which pgrx generates the install script `stage_norm--<new>.sql`. The
//! upgrade script `stage_norm--<old>--<new>.sql` is that install script, less what the frozen
//! `stage_norm--<old>.sql` already created, with routines and views of the old release replaced
//! in place (`CREATE OR REPLACE`), between two small hand-written parts:
//!
//! - `sql/upgrade/pre.sql`: what must change before (old routines whose signature, parameter
//!   names or result type change are dropped; old tables gain their columns; old triggers and
//!   policies that change are dropped, the install script creates them again);
//! - `sql/upgrade/post.sql`: what runs after (constraints that need new functions, data).
//!
//! The generator refuses what it cannot decide: an old table, trigger, policy, index or type
//! that the new release defines differently and that neither part drops or alters, an old object
//! the new release no longer has and `pre.sql` does not drop, and any routine or view defined
//! twice. tests/tests/upgrade.rs then proves on a server that an updated database's catalog
//! equals a fresh install's.
//!
//! No dependencies and no server: `cargo test -p stage_norm_sqlgen` checks the topic files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One SQL statement of a script: the comments and blank lines before it, and its text
/// (with its `;`). A psql meta-command line (`\echo ...`) is a statement of its own.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub lead: String,
    pub body: String,
    /// Line of the script where the body starts (1-based), for messages.
    pub line: usize,
}

/// An error of the generator or the check, with where it comes from.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: String) -> Result<T, Error> {
    Err(Error(msg))
}

/// Splits a script into statements. Understands `--` and nested `/* */` comments, '...' and
/// E'...' strings, "..." identifiers and $tag$...$tag$ quoting; `;` ends a statement only
/// outside all of them.
pub fn split(sql: &str) -> Vec<Stmt> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut lead_start = 0;
    let mut line = 1;
    while i < b.len() {
        // Between statements: white space and comments are the next statement's lead.
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = skip_block_comment(b, i);
            line += count_lines(&b[i..end]);
            i = end;
            continue;
        }
        let start = i;
        let start_line = line;
        if c == b'\\' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            i = statement_end(b, i);
        }
        line += count_lines(&b[start..i]);
        out.push(Stmt { lead: sql[lead_start..start].to_string(), body: sql[start..i].to_string(), line: start_line });
        lead_start = i;
    }
    out
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end of a quoted token starting at `i` (a string, identifier or dollar quote), or None
/// when `i` does not start one.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    match b[i] {
        b'\'' => {
            let backslash = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') && (i < 2 || !is_ident(b[i - 2]));
            Some(closing(b, i, b'\'', backslash))
        }
        b'"' => Some(closing(b, i, b'"', false)),
        b'$' => {
            // $$ or $tag$ (a tag does not start with a digit: $1 is a parameter)
            if i > 0 && is_ident(b[i - 1]) {
                return None;
            }
            let mut j = i + 1;
            if j < b.len() && b[j].is_ascii_digit() {
                return None;
            }
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            if j >= b.len() || b[j] != b'$' {
                return None;
            }
            let tag = &b[i..=j];
            let mut k = j + 1;
            while k + tag.len() <= b.len() {
                if &b[k..k + tag.len()] == tag {
                    return Some(k + tag.len());
                }
                k += 1;
            }
            Some(b.len())
        }
        _ => None,
    }
}

/// The end of a string or identifier opened by the quote `q` at `i`: a doubled quote stays
/// inside, and so, when `backslash` (an E'' string), does a quote after a backslash.
fn closing(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn statement_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        if let Some(end) = quoted_end(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b';' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// A statement's text for comparison: comments outside quotes removed, white space outside
/// quotes collapsed to one space; quoted text (a routine's body) kept byte for byte.
pub fn normalized(body: &str) -> String {
    let b = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    let mut space = false;
    while i < b.len() {
        if let Some(end) = quoted_end(b, i) {
            push_space(&mut out, space, b[i]);
            space = false;
            out.push_str(&body[i..end]);
            i = end;
            continue;
        }
        if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i);
            space = true;
            continue;
        }
        if b[i].is_ascii_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        push_space(&mut out, space, b[i]);
        space = false;
        let ch = body[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A pending white space, unless it only separates a bracket or a comma from what is next to
/// it (`( a int )` reads as `(a int)`).
fn push_space(out: &mut String, space: bool, next: u8) {
    if space && !out.is_empty() && !matches!(next, b')' | b',') && !out.ends_with(['(', ',']) {
        out.push(' ');
    }
}

/// What kind of object a statement creates or drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Routine,
    View,
    Table,
    Index,
    Trigger,
    EventTrigger,
    Policy,
    Type,
    Sequence,
    Schema,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Routine => "routine",
            Kind::View => "view",
            Kind::Table => "table",
            Kind::Index => "index",
            Kind::Trigger => "trigger",
            Kind::EventTrigger => "event trigger",
            Kind::Policy => "policy",
            Kind::Type => "type",
            Kind::Sequence => "sequence",
            Kind::Schema => "schema",
        }
    }
    /// Routines and views can be replaced in place.
    fn replaceable(self) -> bool {
        matches!(self, Kind::Routine | Kind::View)
    }
}

/// An object: its kind and name (schema stage_norm implied, quotes removed; triggers and
/// policies are named `name on table`; an index without a name by its whole definition).
pub type Object = (Kind, String);

pub fn describe(o: &Object) -> String {
    format!("{} {}", o.0.name(), o.1)
}

/// Upper-case words of the normalized text up to the first '(' or quote, for matching heads.
fn words(norm: &str) -> Vec<String> {
    norm.split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| w.to_string())
        .collect()
}

/// An object name as written (`stage_norm."_x"`, `"_x"`, `_x`, `STAGE_NORM._X`) in one form: `_x`.
/// Unquoted parts are lower-cased, as PostgreSQL folds them; quoted ones are kept as written.
pub fn object_name(raw: &str) -> String {
    let raw = raw.trim().trim_end_matches(';');
    let raw = raw.split('(').next().unwrap_or(raw);
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in raw.chars() {
        match ch {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    if parts.len() > 1 && parts[0] == "stage_norm" {
        parts.remove(0);
    }
    parts.join(".")
}

fn upper(w: &[String], i: usize) -> String {
    w.get(i).map(|s| s.to_uppercase()).unwrap_or_default()
}

/// The object a CREATE statement creates, if any, and whether it says OR REPLACE. A CREATE of a
/// kind this tool does not know is `Err` with the kind's words: the generator refuses it.
pub fn created(body: &str) -> Option<(Object, bool)> {
    created_or_unknown(body).ok().flatten()
}

fn created_or_unknown(body: &str) -> Result<Option<(Object, bool)>, String> {
    let norm = normalized(body);
    let w = words(&norm);
    if upper(&w, 0) != "CREATE" {
        return Ok(None);
    }
    let mut i = 1;
    let mut or_replace = false;
    if upper(&w, 1) == "OR" && upper(&w, 2) == "REPLACE" {
        or_replace = true;
        i = 3;
    }
    // Words that qualify the kind without changing which object it is.
    while matches!(upper(&w, i).as_str(), "TEMP" | "TEMPORARY" | "RECURSIVE" | "UNLOGGED" | "TRUSTED") {
        i += 1;
    }
    let kw = upper(&w, i);
    let name_at = |j: usize| -> usize {
        // CREATE TABLE IF NOT EXISTS name
        if upper(&w, j) == "IF" && upper(&w, j + 1) == "NOT" && upper(&w, j + 2) == "EXISTS" {
            j + 3
        } else {
            j
        }
    };
    let get = |j: usize| w.get(j).map(|x| object_name(x)).ok_or_else(|| format!("CREATE {kw} without a name"));
    let obj = match kw.as_str() {
        "FUNCTION" | "PROCEDURE" => (Kind::Routine, get(name_at(i + 1))?),
        "VIEW" => (Kind::View, get(name_at(i + 1))?),
        "TABLE" => (Kind::Table, get(name_at(i + 1))?),
        "TYPE" => (Kind::Type, get(name_at(i + 1))?),
        "SEQUENCE" => (Kind::Sequence, get(name_at(i + 1))?),
        "UNIQUE" | "INDEX" => {
            let mut j = if kw == "UNIQUE" { i + 2 } else { i + 1 };
            if upper(&w, j) == "CONCURRENTLY" {
                j += 1;
            }
            let j = name_at(j);
            if upper(&w, j) == "ON" {
                return Err("CREATE INDEX without a name: name it (an unnamed index cannot be dropped by name in a later step)".into());
            }
            (Kind::Index, get(j)?)
        }
        "EVENT" => (Kind::EventTrigger, get(i + 2)?),
        "TRIGGER" | "CONSTRAINT" => {
            let j = if kw == "CONSTRAINT" { i + 2 } else { i + 1 };
            let name = get(j)?;
            let on = w.iter().skip(j + 1).position(|x| x.eq_ignore_ascii_case("ON")).ok_or_else(|| format!("CREATE {kw} {name} without ON"))? + j + 1;
            (Kind::Trigger, format!("{} on {}", name, get(on + 1)?))
        }
        "POLICY" => {
            let name = get(i + 1)?;
            if upper(&w, i + 2) != "ON" {
                return Err(format!("CREATE POLICY {name} without ON"));
            }
            (Kind::Policy, format!("{} on {}", name, get(i + 3)?))
        }
        "SCHEMA" => (Kind::Schema, get(name_at(i + 1))?),
        _ => {
            return Err(format!(
                "CREATE {}: tools/sqlgen does not know this kind of object; teach it (tools/sqlgen/src/lib.rs, created_or_unknown)",
                w[1..=i.min(w.len() - 1)].join(" ")
            ))
        }
    };
    Ok(Some((obj, or_replace)))
}

/// A routine's parameters (modes, names, types, defaults) and result, from its CREATE text, in
/// one form: common type aliases spelled out, case and quotes of plain identifiers folded. Two
/// routines with different forms cannot replace one another (`CREATE OR REPLACE` refuses a new
/// result type or parameter name, and a new parameter type makes an overload).
pub fn routine_header(body: &str) -> String {
    let norm = normalized(body);
    let Some(open) = norm.find('(') else { return String::new() };
    let b = norm.as_bytes();
    let mut depth = 0;
    let mut close = open;
    let mut i = open;
    while i < b.len() {
        if let Some(end) = quoted_end(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    close = i;
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let params = &norm[open..=close];
    // The result: RETURNS ... up to the first attribute keyword.
    let rest = &norm[close + 1..];
    let mut result = String::new();
    let up = rest.to_uppercase();
    if let Some(r) = up.find("RETURNS ") {
        let tail = &rest[r + 8..];
        let stop = [" LANGUAGE ", " AS ", " STRICT", " STABLE", " IMMUTABLE", " VOLATILE", " SECURITY ", " SET ", " PARALLEL ", " COST ",
            " ROWS ", " CALLED ", " LEAKPROOF", " NOT ", " WINDOW", " SUPPORT ", " RETURNS NULL", ";"]
            .iter()
            .filter_map(|k| tail.to_uppercase().find(k))
            .min()
            .unwrap_or(tail.len());
        result = tail[..stop].to_string();
    }
    let fold = |t: &str| -> String {
        let mut out = String::new();
        let tb = t.as_bytes();
        let mut i = 0;
        while i < tb.len() {
            if tb[i] == b'"' {
                // a quoted identifier that is a plain lower-case word reads as itself
                let end = quoted_end(tb, i).unwrap_or(tb.len());
                let inner = &t[i + 1..end.saturating_sub(1).max(i + 1)];
                if inner.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                    out.push_str(inner);
                } else {
                    out.push_str(&t[i..end]);
                }
                i = end;
                continue;
            }
            if let Some(end) = quoted_end(tb, i) {
                out.push_str(&t[i..end]);
                i = end;
                continue;
            }
            let ch = t[i..].chars().next().unwrap();
            out.extend(ch.to_lowercase());
            i += ch.len_utf8();
        }
        // type aliases, word by word
        let words: Vec<String> = out
            .split(' ')
            .map(|w| {
                let (core, tail) = match w.find([',', ')', '[']) {
                    Some(k) => (&w[..k], &w[k..]),
                    None => (w, ""),
                };
                let core = match core {
                    "int" | "int4" => "integer",
                    "int8" => "bigint",
                    "int2" => "smallint",
                    "bool" => "boolean",
                    "float8" => "double precision",
                    "float4" => "real",
                    "varchar" => "character varying",
                    "timestamptz" => "timestamp with time zone",
                    "decimal" => "numeric",
                    c => c,
                };
                format!("{core}{tail}")
            })
            .collect();
        words.join(" ")
    };
    format!("{} -> {}", fold(params), fold(result.trim()))
}

/// The objects a DROP statement drops (`DROP FUNCTION a(int), b(text)`, `DROP TRIGGER t ON x`).
pub fn dropped(body: &str) -> Vec<Object> {
    let norm = normalized(body);
    let w = words(&norm);
    if upper(&w, 0) != "DROP" {
        return Vec::new();
    }
    let kind = match upper(&w, 1).as_str() {
        "FUNCTION" | "PROCEDURE" | "ROUTINE" => Kind::Routine,
        "VIEW" => Kind::View,
        "TABLE" => Kind::Table,
        "INDEX" => Kind::Index,
        "TRIGGER" => Kind::Trigger,
        "EVENT" => Kind::EventTrigger,
        "POLICY" => Kind::Policy,
        "TYPE" => Kind::Type,
        "SEQUENCE" => Kind::Sequence,
        "SCHEMA" => Kind::Schema,
        _ => return Vec::new(),
    };
    // the list after the kind words and IF EXISTS, up to CASCADE/RESTRICT/ON
    let skip = if kind == Kind::EventTrigger { 3 } else { 2 };
    let mut rest: &str = &norm;
    for _ in 0..skip {
        rest = rest.trim_start().split_once(' ').map(|x| x.1).unwrap_or("");
    }
    let mut rest = rest.trim_start().to_string();
    if rest.to_uppercase().starts_with("IF EXISTS ") {
        rest = rest[10..].to_string();
    }
    let rest = rest.trim_end_matches(';').trim();
    if matches!(kind, Kind::Trigger | Kind::Policy) {
        let ws: Vec<&str> = rest.split_whitespace().collect();
        if ws.len() >= 3 && ws[1].eq_ignore_ascii_case("ON") {
            return vec![(kind, format!("{} on {}", object_name(ws[0]), object_name(ws[2])))];
        }
        return Vec::new();
    }
    let names = split_top_level(rest, '(', ')');
    names
        .into_iter()
        .map(|n| {
            let n = n.trim();
            let n = n.strip_suffix(" CASCADE").or_else(|| n.strip_suffix(" cascade")).unwrap_or(n);
            (kind, object_name(n))
        })
        .filter(|o| !o.1.is_empty())
        .collect()
}

/// `text` split at the commas outside `open`/`close` brackets, up to a `close` that no `open`
/// matches (`a(b, c), d` gives `a(b, c)` and ` d`).
pub fn split_top_level(text: &str, open: char, close: char) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in text.chars() {
        if ch == close && depth == 0 {
            break;
        }
        if ch == ',' && depth == 0 {
            items.push(std::mem::take(&mut cur));
            continue;
        }
        if ch == open {
            depth += 1;
        } else if ch == close {
            depth -= 1;
        }
        cur.push(ch);
    }
    items.push(cur);
    items
}

/// FNV-1a, 64 bits, in hex: the hash a `-- sqlgen: table` line records.
pub fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Every CREATE in the given scripts that the generator would refuse (a kind it does not know,
/// an index without a name), with where.
pub fn unknown_creates(scripts: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in scripts {
        for s in split(text) {
            if let Err(why) = created_or_unknown(&s.body) {
                out.push(format!("{}:{}: {}", name, s.line, why));
            }
        }
    }
    out
}

/// Every routine and view defined more than once in the given scripts, with where.
pub fn duplicate_definitions(scripts: &[(&str, &str)]) -> Vec<String> {
    let mut seen: BTreeMap<Object, Vec<String>> = BTreeMap::new();
    for (name, text) in scripts {
        for s in split(text) {
            if let Some((o, _)) = created(&s.body) {
                if o.0.replaceable() {
                    seen.entry(o).or_default().push(format!("{}:{}", name, s.line));
                }
            }
        }
    }
    seen.into_iter()
        .filter(|(_, w)| w.len() > 1)
        .map(|(o, w)| format!("{} is defined {} times: {}", describe(&o), w.len(), w.join(", ")))
        .collect()
}

/// The upgrade script from `old` (the frozen install script of the old release), `new` (the
/// install script pgrx generated for this one), `pre` and `post`.
pub fn upgrade(old: &str, new: &str, pre: &str, post: &str, from: &str, to: &str) -> Result<String, Error> {
    // What the old release created, and the text that created it.
    let mut problems = Vec::new();
    let mut old_objects: BTreeMap<Object, String> = BTreeMap::new();
    for (name, text) in [(from, old), (to, new)] {
        for s in split(text) {
            match created_or_unknown(&s.body) {
                Ok(Some((o, _))) if name == from => {
                    old_objects.insert(o, normalized(&s.body));
                }
                Err(why) => problems.push(format!("the install script of {name}, line {}: {why}", s.line)),
                _ => {}
            }
        }
    }
    // What pre.sql drops, and the tables pre.sql and post.sql declare they alter
    // (`-- sqlgen: table <name> <hash of its new CREATE TABLE>`).
    let mut dropped_by_pre = BTreeSet::new();
    let mut altered: BTreeMap<String, String> = BTreeMap::new();
    for (part, text) in [("pre", pre), ("post", post)] {
        for l in text.lines() {
            if let Some(rest) = l.trim().strip_prefix("-- sqlgen: table ") {
                let mut it = rest.split_whitespace();
                if let (Some(t), Some(h)) = (it.next(), it.next()) {
                    altered.insert(object_name(t), h.to_string());
                }
            }
        }
        for s in split(text) {
            if part == "pre" && normalized(&s.body).to_uppercase().starts_with("DROP ") && normalized(&s.body).to_uppercase().contains(" CASCADE") {
                problems.push(format!(
                    "sql/upgrade/pre.sql:{}: DROP ... CASCADE could drop unchanged {from} objects that nothing creates again: drop each dependent object by name",
                    s.line
                ));
            }
            for o in dropped(&s.body) {
                if part == "pre" {
                    dropped_by_pre.insert(o);
                } else if old_objects.contains_key(&o) {
                    return err(format!(
                        "sql/upgrade/post.sql:{}: drops {}, which the install script would have replaced first: drop it in pre.sql",
                        s.line,
                        describe(&o)
                    ));
                }
            }
        }
    }
    let hand: Vec<(&str, &str)> = vec![("sql/upgrade/pre.sql", pre), ("sql/upgrade/post.sql", post)];
    // A routine or view a hand-written part creates and the install script creates too has two
    // homes.
    let new_stmts = split(new);
    let new_objects: BTreeSet<Object> = new_stmts.iter().filter_map(|s| created(&s.body).map(|x| x.0)).collect();
    for (name, text) in &hand {
        for s in split(text) {
            if let Some((o, _)) = created(&s.body) {
                if new_objects.contains(&o) && o.0.replaceable() {
                    problems.push(format!(
                        "{}:{}: {} is defined here and in the install script (its topic file is its one home)",
                        name,
                        s.line,
                        describe(&o)
                    ));
                }
            }
        }
    }
    let mut body = String::new();
    let mut made: BTreeMap<Object, usize> = BTreeMap::new();
    for s in &new_stmts {
        if s.body.starts_with('\\') {
            continue;
        }
        let lead = strip_pgrx_markers(&s.lead);
        let Some((o, or_replace)) = created(&s.body) else {
            emit(&mut body, &lead, &s.body);
            continue;
        };
        *made.entry(o.clone()).or_default() += 1;
        let Some(old_text) = old_objects.get(&o) else {
            emit(&mut body, &lead, &s.body);
            continue;
        };
        if dropped_by_pre.contains(&o) {
            emit(&mut body, &lead, &s.body);
            continue;
        }
        if *old_text == normalized(&s.body) {
            continue; // 0.1.0 created it just so
        }
        if o.0 == Kind::Routine && routine_header(old_text) != routine_header(&s.body) {
            problems.push(format!(
                "install script line {}: {} of {} changes its parameters or result ({} => {}): CREATE OR REPLACE cannot do that; DROP it in sql/upgrade/pre.sql (the install script creates it again)",
                s.line,
                describe(&o),
                from,
                routine_header(old_text),
                routine_header(&s.body)
            ));
            continue;
        }
        if o.0.replaceable() {
            let text = if or_replace { s.body.clone() } else { or_replace_form(&s.body) };
            emit(&mut body, &lead, &text);
            continue;
        }
        if o.0 == Kind::Table {
            let hash = fnv_hex(&normalized(&s.body));
            match altered.get(&o.1) {
                Some(h) if *h == hash => continue, // pre.sql or post.sql alters it into this form
                Some(h) => {
                    problems.push(format!(
                        "install script line {}: {} changed again since sql/upgrade/ declared it altered (`-- sqlgen: table {} {}`): bring its ALTERs up to date, then make that line `-- sqlgen: table {} {}`",
                        s.line,
                        describe(&o),
                        o.1,
                        h,
                        o.1,
                        hash
                    ));
                    continue;
                }
                None => {
                    problems.push(format!(
                        "install script line {}: {} of {} is defined differently in {}: ALTER it in sql/upgrade/pre.sql or post.sql, with the line `-- sqlgen: table {} {}` there (the hash of its new CREATE TABLE: a later change is refused until the ALTERs follow it); tests/upgrade.rs then compares the result with a fresh install",
                        s.line,
                        describe(&o),
                        from,
                        to,
                        o.1,
                        hash
                    ));
                    continue;
                }
            }
        }
        problems.push(format!(
            "install script line {}: {} of {} is defined differently in {}: DROP it in sql/upgrade/pre.sql (the install script creates it again)",
            s.line,
            describe(&o),
            from,
            to
        ));
    }
    for (o, n) in &made {
        if *n > 1 && o.0.replaceable() {
            problems.push(format!("the install script defines {} {} times", describe(o), n));
        }
    }
    // A GRANT or REVOKE of the old release that the new one no longer makes stays in effect in an
    // updated database: the hand-written parts must undo it.
    let new_texts: BTreeSet<String> = new_stmts.iter().map(|s| normalized(&s.body)).collect();
    let hand_texts: BTreeSet<String> = [pre, post].iter().flat_map(|t| split(t)).map(|s| normalized(&s.body)).collect();
    for s in split(old) {
        let t = normalized(&s.body);
        let up = t.to_uppercase();
        if !(up.starts_with("GRANT ") || up.starts_with("REVOKE ")) || new_texts.contains(&t) {
            continue;
        }
        let inverse = if up.starts_with("GRANT ") {
            format!("REVOKE {}", t[6..].replacen(" TO ", " FROM ", 1))
        } else {
            format!("GRANT {}", t[7..].replacen(" FROM ", " TO ", 1))
        };
        if !hand_texts.iter().any(|h| h.eq_ignore_ascii_case(&inverse)) {
            problems.push(format!(
                "{} line {}: `{}` is not in {}: undo it in sql/upgrade/pre.sql or post.sql with `{}`",
                from, s.line, t, to, inverse
            ));
        }
    }
    for o in old_objects.keys() {
        if !new_objects.contains(o) && !dropped_by_pre.contains(o) {
            problems.push(format!("{} of {} is gone in {}: DROP it in sql/upgrade/pre.sql", describe(o), from, to));
        }
    }
    if !problems.is_empty() {
        return err(problems.join("\n"));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "-- stage_norm {from} -> {to}. GENERATED by `make install` (tools/sqlgen) from the install script of\n\
         -- {to} and sql/upgrade/{{pre,post}}.sql: edit those, not this file (docs/development.md).\n\
         \\echo Use \"ALTER EXTENSION stage_norm UPDATE TO '{to}'\" to load this file. \\quit\n\n"
    ));
    out.push_str("-- ==== sql/upgrade/pre.sql ====\n");
    out.push_str(pre.trim_end());
    out.push_str("\n\n-- ==== the install script, less what ");
    out.push_str(from);
    out.push_str(" created just so; its routines and views replaced ====\n");
    out.push_str(&body);
    out.push_str("\n-- ==== sql/upgrade/post.sql ====\n");
    out.push_str(post.trim_end());
    out.push('\n');
    Ok(out)
}

fn emit(out: &mut String, lead: &str, body: &str) {
    out.push_str(lead);
    out.push_str(body);
    out.push('\n');
}

/// pgrx's `/* <begin connected objects> */` frames are of no use in the upgrade script.
fn strip_pgrx_markers(lead: &str) -> String {
    let mut out = String::new();
    for l in lead.split_inclusive('\n') {
        let t = l.trim();
        if t == "/* <begin connected objects> */" || t == "/* </end connected objects> */" {
            continue;
        }
        out.push_str(l);
    }
    // at most one blank line in a row
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out
}

/// `CREATE  FUNCTION ...` as `CREATE OR REPLACE FUNCTION ...`.
fn or_replace_form(body: &str) -> String {
    let rest = body[6..].trim_start();
    format!("CREATE OR REPLACE {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_quotes_and_comments() {
        let s = split(
            "-- a; comment\nCREATE FUNCTION f() RETURNS int AS $x$ SELECT 1; $x$ LANGUAGE sql;\n\
             /* b; */ SELECT 'it''s;', \"a;b\", E'\\';';\n\\echo x \\quit\nSELECT $1;",
        );
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].lead, "-- a; comment\n");
        assert!(s[0].body.ends_with("LANGUAGE sql;"));
        assert_eq!(s[1].body, "SELECT 'it''s;', \"a;b\", E'\\';';");
        assert!(s[2].body.starts_with("\\echo"));
        assert_eq!(s[3].body, "SELECT $1;");
        assert_eq!((s[0].line, s[1].line), (2, 3));
    }

    #[test]
    fn normalizes_outside_quotes_only() {
        assert_eq!(normalized("CREATE  FUNCTION f() -- c\n AS $$ a  -- b\n $$;"), "CREATE FUNCTION f() AS $$ a  -- b\n $$;");
        assert_ne!(normalized("AS $$ a $$"), normalized("AS $$ a  $$"));
    }

    #[test]
    fn names_objects() {
        let f = |s: &str| created(s).map(|x| describe(&x.0));
        assert_eq!(f("CREATE  FUNCTION \"_x\"(a int)"), Some("routine _x".into()));
        assert_eq!(f("CREATE OR REPLACE PROCEDURE stage_norm.migrate(\n a int)"), Some("routine migrate".into()));
        assert_eq!(f("CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stage_norm.t FOR EACH ROW"), Some("trigger stamp on t".into()));
        assert_eq!(f("CREATE EVENT TRIGGER stage_norm_ddl ON ddl_command_end"), Some("event trigger stage_norm_ddl".into()));
        assert_eq!(f("CREATE POLICY read_all ON stage_norm.t FOR SELECT"), Some("policy read_all on t".into()));
        assert_eq!(f("CREATE VIEW stage_norm.v AS SELECT 1;"), Some("view v".into()));
        assert_eq!(f("SELECT 1"), None);
        assert_eq!(f("CREATE TABLE IF NOT EXISTS stage_norm.t (a int)"), Some("table t".into()));
        assert_eq!(f("create or replace recursive view STAGE_NORM.V (a) AS SELECT 1"), Some("view v".into()));
        assert_eq!(f("CREATE FUNCTION stage_norm.\"Foo\"()"), Some("routine Foo".into()));
        assert_ne!(f("CREATE FUNCTION \"Foo\"()"), f("CREATE FUNCTION foo()"));
        assert_eq!(
            dropped("DROP FUNCTION IF EXISTS stage_norm.a(int, text), stage_norm.b() CASCADE;"),
            vec![(Kind::Routine, "a".into()), (Kind::Routine, "b".into())]
        );
        assert_eq!(dropped("DROP TRIGGER x ON stage_norm.t;"), vec![(Kind::Trigger, "x on t".into())]);
    }

    #[test]
    fn replaces_skips_and_refuses() {
        let old = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n\
                   CREATE FUNCTION g() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n\
                   CREATE TABLE t (a int);\nCREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f();";
        let new = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 2 $$ LANGUAGE sql;\n\
                   CREATE FUNCTION g() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n\
                   CREATE FUNCTION h() RETURNS int AS $$ SELECT 3 $$ LANGUAGE sql;\n\
                   CREATE TABLE t (a int, b int);\nCREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f();";
        let e = upgrade(old, new, "", "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("table t of 0.1 is defined differently"), "{e}");
        let hash = fnv_hex(&normalized("CREATE TABLE t (a int, b int);"));
        assert!(e.contains(&format!("-- sqlgen: table t {hash}")), "{e}");
        // an ALTER alone does not silence it: the declaration with the new table's hash does
        let e = upgrade(old, new, "ALTER TABLE t ADD b int;", "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("table t of 0.1 is defined differently"), "{e}");
        let e = upgrade(old, &new.replace("b int", "b bigint"), &format!("-- sqlgen: table t {hash}\nALTER TABLE t ADD b int;"), "", "0.1", "0.2")
            .unwrap_err()
            .0;
        assert!(e.contains("changed again since"), "{e}");
        let out = upgrade(old, new, &format!("-- sqlgen: table t {hash}\nALTER TABLE t ADD b int;"), "", "0.1", "0.2").unwrap();
        assert!(out.contains("CREATE OR REPLACE FUNCTION f()"), "{out}");
        assert!(!out.contains("FUNCTION g()"), "{out}");
        assert!(out.contains("\nCREATE FUNCTION h()"), "{out}");
        assert!(!out.contains("CREATE TABLE") && !out.contains("CREATE TRIGGER"), "{out}");
        // parameters or result that change are refused unless pre.sql drops the routine
        let changed = new.replace("CREATE FUNCTION f() RETURNS int AS $$ SELECT 2 $$", "CREATE FUNCTION f(x int) RETURNS int AS $$ SELECT 2 $$");
        let pre = format!("-- sqlgen: table t {hash}\nALTER TABLE t ADD b int;");
        let e = upgrade(old, &changed, &pre, "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("routine f of 0.1 changes its parameters or result"), "{e}");
        let out = upgrade(old, &changed, &format!("{pre}\nDROP FUNCTION f();"), "", "0.1", "0.2").unwrap();
        assert!(out.contains("\nCREATE FUNCTION f(x int)"), "{out}");
        let e = upgrade(old, &new.replace("RETURNS int AS $$ SELECT 2", "RETURNS bigint AS $$ SELECT 2"), &pre, "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("changes its parameters or result"), "{e}");
        // spelling alone is no change
        assert_eq!(routine_header("CREATE  FUNCTION \"f\"(\n\t\"label\" TEXT /* & str */\n) RETURNS TEXT STRICT"), routine_header("CREATE FUNCTION stage_norm.f(label text) RETURNS text LANGUAGE c"));
        assert_eq!(routine_header("CREATE FUNCTION f(a int4, b bool) RETURNS int8 AS"), routine_header("CREATE FUNCTION f( a integer , b boolean ) RETURNS bigint AS"));
        // DROP ... CASCADE in pre.sql, a kind it does not know, a grant that is gone
        let e = upgrade(old, &changed, &format!("{pre}\nDROP FUNCTION f() CASCADE;"), "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("CASCADE"), "{e}");
        let e = upgrade(old, &format!("{new}\nCREATE CAST (int AS text) WITH INOUT;"), &pre, "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("CREATE CAST: tools/sqlgen does not know"), "{e}");
        let e = upgrade(old, &format!("{new}\nCREATE INDEX ON t (a);"), &pre, "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("CREATE INDEX without a name"), "{e}");
        let granted = format!("{old}\nGRANT SELECT ON t TO PUBLIC;");
        let e = upgrade(&granted, new, &pre, "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("`GRANT SELECT ON t TO PUBLIC;` is not in 0.2"), "{e}");
        upgrade(&granted, new, &pre, "REVOKE SELECT ON t FROM PUBLIC;", "0.1", "0.2").unwrap();
        // an old object that is gone must be dropped
        let e = upgrade(old, "CREATE TABLE t (a int);", "", "", "0.1", "0.2").unwrap_err().0;
        assert!(e.contains("routine g of 0.1 is gone"), "{e}");
        // a second home
        let e = upgrade(old, new, "ALTER TABLE t ADD b int; CREATE FUNCTION h() RETURNS int AS $$ $$ LANGUAGE sql;", "", "0.1", "0.2")
            .unwrap_err()
            .0;
        assert!(e.contains("routine h is defined here and in the install script"), "{e}");
    }

    #[test]
    fn finds_duplicates() {
        let d = duplicate_definitions(&[("a.sql", "CREATE FUNCTION f() ...;\nCREATE FUNCTION g();"), ("b.sql", "\n\ncreate or replace function STAGE_NORM.F(x int);")]);
        assert_eq!(d, vec!["routine f is defined 2 times: a.sql:1, b.sql:3".to_string()]);
    }

    /// The check that needs no server: every routine and view of the topic files under sql/
    /// and of the hand-written upgrade parts has one definition.
    #[test]
    fn sql_files_define_each_routine_once() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sql");
        let mut files: Vec<(String, String)> = Vec::new();
        for dir in [root.to_string(), format!("{root}/upgrade")] {
            let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                // the frozen install scripts of earlier releases are another release's homes
                if p.extension().is_some_and(|e| e == "sql") && !name.starts_with("stage_norm--") {
                    files.push((format!("sql/{}{name}", if dir.ends_with("upgrade") { "upgrade/" } else { "" }), std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        assert!(files.len() >= 10, "{files:?}");
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let d = duplicate_definitions(&refs);
        assert!(d.is_empty(), "{}", d.join("\n"));
        let u = unknown_creates(&refs);
        assert!(u.is_empty(), "{}", u.join("\n"));
    }
}
