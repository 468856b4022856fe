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

/// The top-level modules named by `crate::<module>` in a file, grouped imports
/// (`use crate::{a, b::c}`) included.
fn crate_refs(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // `storeapi_exporter::` paths come from outside the crate
        if text[..i].ends_with('_') {
            continue;
        }
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // the first segment of each item at the group's top level
            let mut depth = 1;
            let mut item_start = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        refs.push(ident(&group[item_start..k]));
                        item_start = k + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            refs.push(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && r != "self");
    refs
}

#[test]
fn grouped_imports_are_read_too() {
    let refs = crate_refs(
        "use crate::{cmd, model::{Labels, Series}};\nuse crate::store::proto;\nstoreapi_exporter::sink::x",
    );
    assert_eq!(refs, ["cmd", "model", "store"]);
}

#[test]
fn modules_import_only_from_modules_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            ["pub mod ", "pub(crate) mod ", "mod "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
        })
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
