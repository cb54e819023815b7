//! The files of one top-level module and which of them each one uses, read from the
//! source text: `use` trees and paths through `crate::`, `super::`, `self::` and declared
//! child modules, and inherent `impl T` blocks for a type another file defines. A
//! `pub use` in a `mod.rs` only re-exports (a facade), so it is no edge; a name taken
//! through such a re-export counts as taken from the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// file (relative to `src/`, e.g. `recorder/clips.rs`) → the files of the same top-level
/// module it uses.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Lt,
    Gt,
    Punct(char),
}

/// The tokens of `text` up to its first `#[cfg(test)]`, without comments, strings or
/// character literals.
fn tokens(text: &str) -> Vec<Tok> {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(next, Some(b'"' | b'#')) && raw_string(b, i).is_some() {
            i = raw_string(b, i).unwrap_or(b.len());
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime (left as is).
            let close = (i + 2..(i + 12).min(b.len())).find(|&j| b[j] == b'\'');
            let is_char = match close {
                Some(j) => b[i + 1] == b'\\' || j == i + 2 || !text.is_char_boundary(i + 2),
                None => false,
            };
            i = match (is_char, close) {
                (true, Some(j)) => j + 1,
                _ => i + 1,
            };
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(text[start..i].to_owned()));
        } else if c == b':' && next == Some(b':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(match c {
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                b'*' => Tok::Star,
                b'<' => Tok::Lt,
                b'>' => Tok::Gt,
                c => Tok::Punct(c as char),
            });
            i += 1;
        }
    }
    out
}

/// The end of a raw string starting at `i` (`r"…"`, `r#"…"#`), if one starts there.
fn raw_string(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    if b.get(i + 1 + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = i + 2 + hashes;
    (body..b.len())
        .find(|&j| b[j..].starts_with(&close))
        .map(|j| j + close.len())
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// The full paths of the use tree or path at `t[i..]`; `i` moves past it.
fn paths(t: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match t.get(*i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if t.get(*i) != Some(&Tok::PathSep) {
                    break;
                }
                *i += 1;
            }
            Some(Tok::Star) => {
                *i += 1;
                break;
            }
            Some(Tok::Open) => {
                *i += 1;
                while *i < t.len() && t[*i] != Tok::Close {
                    if t[*i] == Tok::Comma {
                        *i += 1;
                        continue;
                    }
                    let before = *i;
                    paths(t, i, path.clone(), out);
                    if *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => break,
        }
    }
    // `self` inside a group names the group's own path.
    if path.last().is_some_and(|s| s == "self") {
        path.pop();
    }
    out.push(path);
}

/// What one file says: the paths it names (absolute, from the crate root), which of them
/// are re-exports, the types it defines and the types it has inherent impls for.
#[derive(Debug, Default)]
struct FileFacts {
    used: Vec<Vec<String>>,
    reexported: Vec<Vec<String>>,
    defines: BTreeSet<String>,
    impls: BTreeSet<String>,
}

/// `module`: the file's module path from the crate root (`["recorder", "clips"]`).
fn facts(text: &str, module: &[String], is_mod_rs: bool) -> FileFacts {
    let t = tokens(text);
    let mut f = FileFacts::default();
    let mut children: BTreeSet<String> = BTreeSet::new();
    for w in t.windows(3) {
        if let (Tok::Ident(m), Tok::Ident(name), Tok::Semi) = (&w[0], &w[1], &w[2]) {
            if m == "mod" {
                children.insert(name.clone());
            }
        }
    }
    // Inline `mod name { … }` blocks: (name, the depth their body opened at).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut statement_start = 0;
    let mut i = 0;
    while i < t.len() {
        match &t[i] {
            Tok::Open => {
                depth += 1;
                statement_start = i + 1;
                if let (Some("mod"), Some(name)) = (
                    i.checked_sub(2).and_then(|j| ident(t.get(j))),
                    ident(t.get(i.wrapping_sub(1))),
                ) {
                    inline.push((name.to_owned(), depth));
                }
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                statement_start = i + 1;
            }
            Tok::Semi => statement_start = i + 1,
            _ => {}
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let prev = i.checked_sub(1).and_then(|j| t.get(j));
        let starts_path = t.get(i + 1) == Some(&Tok::PathSep)
            && !matches!(prev, Some(Tok::PathSep | Tok::Punct('.')))
            && ident(prev) != Some("in");
        let root = match ident(t.get(i)) {
            Some(s) if starts_path => s,
            _ => {
                i += 1;
                continue;
            }
        };
        let base: Option<Vec<String>> = match root {
            "crate" => Some(Vec::new()),
            "self" => Some(here.clone()),
            "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
            child if children.contains(child) && inline.is_empty() => Some(here.clone()),
            _ => None,
        };
        let Some(mut base) = base else {
            i += 1;
            continue;
        };
        let reexport = is_mod_rs
            && inline.is_empty()
            && t[statement_start..i]
                .iter()
                .any(|x| *x == Tok::Ident("pub".into()))
            && t[statement_start..i].contains(&Tok::Ident("use".into()));
        if root == "crate" || root == "self" {
            i += 2;
        } else if root == "super" {
            i += 2;
            while ident(t.get(i)) == Some("super") && t.get(i + 1) == Some(&Tok::PathSep) {
                base.pop();
                i += 2;
            }
        }
        let mut found = Vec::new();
        paths(&t, &mut i, base, &mut found);
        if reexport {
            f.reexported.extend(found);
        } else {
            f.used.extend(found);
        }
    }
    for w in t.windows(2) {
        if let (Tok::Ident(kw), Tok::Ident(name)) = (&w[0], &w[1]) {
            if matches!(kw.as_str(), "struct" | "enum" | "union" | "trait" | "type") {
                f.defines.insert(name.clone());
            }
        }
    }
    for (i, tok) in t.iter().enumerate() {
        // Only an item (`impl X {` after `}`, `;` or an attribute), not `-> impl Trait`.
        let prev = i.checked_sub(1).and_then(|j| t.get(j));
        let item = matches!(prev, None | Some(Tok::Close | Tok::Semi | Tok::Punct(']')))
            || ident(prev) == Some("unsafe");
        if *tok != Tok::Ident("impl".into()) || !item {
            continue;
        }
        let mut j = i + 1;
        if t.get(j) == Some(&Tok::Lt) {
            let mut open = 0;
            while j < t.len() {
                match t[j] {
                    Tok::Lt => open += 1,
                    Tok::Gt => open -= 1,
                    _ => {}
                }
                j += 1;
                if open == 0 {
                    break;
                }
            }
        }
        // An inherent impl: `impl Name {` or `impl Name<…> {`, no `for`.
        let Some(name) = ident(t.get(j)) else {
            continue;
        };
        let rest = t[j + 1..].iter().take_while(|x| **x != Tok::Open);
        if !rest.clone().any(|x| *x == Tok::Ident("for".into())) {
            f.impls.insert(name.to_owned());
        }
    }
    f
}

/// `src/recorder/clips.rs` → (`recorder/clips.rs`, `["recorder", "clips"]`).
fn node(src: &Path, file: &Path) -> (String, Vec<String>) {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let name = rel.to_string_lossy().replace('\\', "/");
    let mut module: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    (name, module)
}

/// The file graph of every top-level module that is a directory under `src`.
pub fn graphs(src: &Path, files: &[std::path::PathBuf]) -> BTreeMap<String, Graph> {
    let mut by_module: BTreeMap<Vec<String>, (String, FileFacts)> = BTreeMap::new();
    for file in files {
        let (name, module) = node(src, file);
        if module.len() < 2 && !name.ends_with("mod.rs") {
            continue; // a single-file module
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let f = facts(&text, &module, name.ends_with("mod.rs"));
        by_module.insert(module, (name, f));
    }
    // Names a mod.rs re-exports → the module that defines them.
    let mut reexports: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (module, (_, f)) in &by_module {
        for path in &f.reexported {
            if let Some((item, from)) = path.split_last() {
                let mut name = module.clone();
                name.push(item.clone());
                reexports.insert(name, from.to_vec());
            }
        }
    }
    let resolve = |path: &[String]| -> Option<&String> {
        let mut path = path.to_vec();
        for _ in 0..4 {
            let len = (1..=path.len())
                .rev()
                .find(|&n| by_module.contains_key(&path[..n]))?;
            match reexports.get(&path[..(len + 1).min(path.len())]) {
                Some(from) if len < path.len() => {
                    let mut p = from.clone();
                    p.extend_from_slice(&path[len..]);
                    path = p;
                }
                _ => return by_module.get(&path[..len]).map(|(name, _)| name),
            }
        }
        None
    };
    let mut out: BTreeMap<String, Graph> = BTreeMap::new();
    for (module, (name, f)) in &by_module {
        let top = &module[0];
        let mut edges = BTreeSet::new();
        for path in &f.used {
            if path.first() != Some(top) {
                continue;
            }
            if let Some(target) = resolve(path) {
                edges.insert(target.clone());
            }
        }
        for ty in &f.impls {
            if f.defines.contains(ty) {
                continue;
            }
            let defined: Vec<&String> = by_module
                .iter()
                .filter(|(m, (_, g))| m[0] == *top && g.defines.contains(ty))
                .map(|(_, (n, _))| n)
                .collect();
            if let [one] = defined[..] {
                edges.insert(one.clone());
            }
        }
        edges.remove(name);
        out.entry(top.clone())
            .or_default()
            .insert(name.clone(), edges);
    }
    out
}

/// Every set of files that use each other in a circle (strongly connected components of
/// more than one file), each sorted.
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, small graphs: recursion is fine.
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}
