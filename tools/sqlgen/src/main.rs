//! stage_norm_sqlgen upgrade OLD.sql NEW.sql PRE.sql POST.sql FROM TO OUT.sql
//!   writes the upgrade script from FROM to TO (src/lib.rs says how), or says why it cannot.
//! stage_norm_sqlgen check FILE.sql...
//!   fails when a routine or view is defined more than once across the files, or a CREATE is one
//!   the generator would refuse.
use std::process::exit;

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| {
        eprintln!("stage_norm_sqlgen: {p}: {e}");
        exit(2)
    })
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.first().map(String::as_str) {
        Some("upgrade") if a.len() == 8 => {
            match stage_norm_sqlgen::upgrade(&read(&a[1]), &read(&a[2]), &read(&a[3]), &read(&a[4]), &a[5], &a[6]) {
                Ok(s) => {
                    let dups = stage_norm_sqlgen::duplicate_definitions(&[(a[7].as_str(), s.as_str())]);
                    if !dups.is_empty() {
                        eprintln!("stage_norm_sqlgen: the upgrade script would define twice:\n{}", dups.join("\n"));
                        exit(1)
                    }
                    std::fs::write(&a[7], s).unwrap_or_else(|e| {
                        eprintln!("stage_norm_sqlgen: {}: {e}", a[7]);
                        exit(2)
                    })
                }
                Err(e) => {
                    eprintln!("stage_norm_sqlgen: cannot build the {} -> {} upgrade script:\n{e}", a[5], a[6]);
                    exit(1)
                }
            }
        }
        Some("check") if a.len() > 1 => {
            let files: Vec<(String, String)> = a[1..].iter().map(|p| (p.clone(), read(p))).collect();
            let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let mut d = stage_norm_sqlgen::duplicate_definitions(&refs);
            d.extend(stage_norm_sqlgen::unknown_creates(&refs));
            if !d.is_empty() {
                eprintln!("{}", d.join("\n"));
                exit(1)
            }
        }
        _ => {
            eprintln!("usage: stage_norm_sqlgen upgrade OLD NEW PRE POST FROM TO OUT | check FILE...");
            exit(2)
        }
    }
}
