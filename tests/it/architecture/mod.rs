//! The rules of ARCHITECTURE.md, checked on the source: every module sits on a layer and
//! imports only modules on lower layers; inside a module, no files use each other in a
//! circle; no source file in `src/` grows past what a reader can hold.

mod files;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::repo;

/// The layers, lowest first (ARCHITECTURE.md explains each). A module may import only
/// modules on a lower layer, never one beside or above it.
const LAYERS: &[&[&str]] = &[
    &["backoff", "clock", "tls", "events", "net"],
    &["commands", "media", "config"],
    &["metrics", "index", "aws"],
    &["capture", "detect", "speaker"],
    &["recorder"],
    &["upload"],
    &["control"],
    &["mqtt", "live", "rtsp", "onvif"],
    &["web"],
    &["daemon"],
    &["cli", "main"],
];

/// Longest source file, in lines (test-only files aside).
const MAX_LINES: usize = 500;

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::` or `edgecam::`, including each item of a
/// `use crate::{a::X, b}` group.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for root in ["crate::", "edgecam::"] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `my_crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_alphanumeric() || c == '_') => {
                            let name: String = group[i..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            found.insert(name);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn imports_only_go_down_the_layers() {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let Some(mine) = layer(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is on no layer: add it to LAYERS here and to ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for import in imports(&code(&text)) {
            if import == module || import == "EXIT_CONFIG" {
                continue;
            }
            match layer(&import) {
                Some(theirs) if theirs < mine => {}
                _ => wrong.push(format!(
                    "{}: `{module}` imports `{import}`, which is not below it",
                    file.strip_prefix(repo()).unwrap_or(file).display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_import_check_sees_every_form_of_path() {
    let found = imports(
        "use crate::{a::{B, C}, d};\nuse edgecam::e::F;\nlet x = crate::g::h();\nmy_crate::z();",
    );
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, ["a", "d", "e", "g"]);
    assert_eq!(
        imports(&code(
            "// crate::commented\n#[cfg(test)]\nuse crate::tests_only;"
        )),
        BTreeSet::new()
    );
}

#[test]
fn every_module_of_the_library_is_on_a_layer() {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).unwrap();
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .filter(|m| layer(m).is_none())
        .collect();
    assert!(missing.is_empty(), "modules on no layer: {missing:?}");
    let doc = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    for module in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            doc.contains(&format!("`{module}`")),
            "ARCHITECTURE.md does not mention `{module}`"
        );
    }
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            name != "tests.rs" && !name.ends_with("_tests.rs")
        })
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

/// Files of one module that still use each other in a circle (each set sorted). Empty
/// is the rule; a set listed here is work to do, and the test fails once it is gone, so
/// the list only shrinks.
const KNOWN_CYCLES: &[&[&str]] = &[];

#[test]
fn no_files_of_a_module_use_each_other_in_a_circle() {
    let src = repo().join("src");
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    let mut found = Vec::new();
    for graph in files::graphs(&src, &all).values() {
        found.extend(files::cycles(graph));
    }
    let known: Vec<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|f| f.to_string()).collect())
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|c| !known.contains(c))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        new.is_empty(),
        "files that use each other in a circle (give the shared part an owner of its \
         own, or move it to the file both use):\n{}",
        new.join("\n")
    );
    let gone: Vec<&Vec<String>> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(gone.is_empty(), "take these off KNOWN_CYCLES: {gone:?}");
}

#[test]
fn the_cycle_check_sees_every_way_files_use_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let sources = [
        // A facade: re-exports are no edges.
        (
            "m/mod.rs",
            "mod a;\nmod b;\nmod c;\nmod d;\npub use a::Thing;\npub(crate) use b::Helper;\n",
        ),
        (
            "m/a.rs",
            "use super::{b::{self}, Helper};\npub struct Thing;\n",
        ),
        // An inherent impl of a sibling's type uses that sibling; a trait impl of a
        // foreign trait, an `-> impl Trait`, strings and comments do not.
        (
            "m/b.rs",
            "pub struct Helper;\nimpl Thing {\n    fn f(&self) -> impl Fn() { || {} }\n}\n\
             impl std::fmt::Debug for Helper { }\nconst S: &str = \"super::c::X\";\n\
             // super::d::Y\nfn g() -> char { '{' }\n",
        ),
        (
            "m/c.rs",
            "pub(super) fn f() { crate::m::d::g(); }\n#[cfg(test)]\nuse super::a::Thing;\n",
        ),
        (
            "m/d.rs",
            "pub(in crate::m) fn g() {}\nmod inner { use super::super::c; }\n",
        ),
    ];
    let mut paths = Vec::new();
    for (name, text) in sources {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let graphs = files::graphs(&src, &paths);
    let g = &graphs["m"];
    let edges = |f: &str| g[f].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(edges("m/mod.rs"), Vec::<&str>::new(), "re-exports only");
    assert_eq!(edges("m/a.rs"), ["m/b.rs"], "through the facade to b");
    assert_eq!(edges("m/b.rs"), ["m/a.rs"], "impl Thing");
    assert_eq!(edges("m/c.rs"), ["m/d.rs"]);
    assert_eq!(edges("m/d.rs"), ["m/c.rs"], "from an inline module");
    assert_eq!(
        files::cycles(g),
        [
            vec!["m/a.rs".to_owned(), "m/b.rs".to_owned()],
            vec!["m/c.rs".to_owned(), "m/d.rs".to_owned()]
        ]
    );
}
