//! The crate's layering: `src/lib.rs` lists the top-level modules in data-flow order, and each
//! imports only from modules above it (or from itself). A new back-edge or cycle fails here.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules named by `crate::<module>` in a file.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `storeapi_exporter::` paths come from outside the crate
        if text[..i].ends_with('_') {
            continue;
        }
        let name: String = text[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            refs.push(name);
        }
    }
    refs
}

#[test]
fn modules_import_only_from_modules_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    assert!(order.len() > 10, "{order:?}");
    let mut back_edges = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for r in crate_refs(&text) {
                match order.iter().position(|m| *m == r) {
                    Some(p) if p <= rank => {}
                    Some(_) => back_edges.push(format!(
                        "{} imports crate::{r}, which comes after {module} in src/lib.rs",
                        f.strip_prefix(&src).unwrap().display()
                    )),
                    None => back_edges.push(format!(
                        "{} names crate::{r}, which src/lib.rs does not list",
                        f.strip_prefix(&src).unwrap().display()
                    )),
                }
            }
        }
    }
    assert!(back_edges.is_empty(), "{}", back_edges.join("\n"));
}
