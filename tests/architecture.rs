//! The crate's structure, checked from its sources: the library's modules import each other
//! without a cycle (so each floor can be read, tested and changed knowing only the floors
//! below it), and no library module reads an environment variable (what runs is decided by
//! `ContextOptions`, never by a user's environment; the CLI and the benchmark turn the
//! `DRCONV_*` switches into that).
//!
//! A module here is one file of `src/` (the library's; `main.rs` and `src/cli/` are the binary).
//! An import is any `crate::`, `super::` or `self::` path outside comments and `#[cfg(test)]`
//! modules, `use` trees expanded; it points at the deepest module file its path names. A
//! `mod.rs` re-exporting a child (`pub use child::X`) imports that child, so a child importing
//! through its parent (`crate::gpu::GpuTensor` from inside `gpu/`) closes a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Library sources: (module path, file, text without comments and test modules).
fn library_files() -> Vec<(String, PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != root.join("cli") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == root.join("main.rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let module = std::iter::once("crate".to_string())
                .chain(parts)
                .collect::<Vec<_>>()
                .join("::");
            let text = strip(&std::fs::read_to_string(&path).unwrap());
            out.push((module, path, text));
        }
    }
    out.sort();
    out
}

/// The source without line comments and without `#[cfg(test)]` modules (their imports are
/// the tests', not the module's).
fn strip(src: &str) -> String {
    let mut text = String::new();
    for line in src.lines() {
        let code = match line.find("//") {
            // A `//` inside a string literal ("http://") is rare here; such a line keeps its code.
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        text.push_str(code);
        text.push('\n');
    }
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Every path of a `use` tree (`a::{b, c::{d, e}}` gives a::b, a::c::d, a::c::e).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().to_string()];
    };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..tree.len() - 1]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |q| format!("{prefix}{q}")))
        .collect()
}

/// Every module path the text names, relative paths made absolute from `module`.
fn paths(module: &str, is_mod_file: bool, text: &str) -> Vec<String> {
    let mut raw = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = rest.find(';') {
            raw.extend(expand(&rest[..end]));
        }
    }
    // Paths in code; a word ending in `::` is the prefix of a `use` tree, expanded above.
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if !word.ends_with("::")
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|p| word.starts_with(p))
        {
            raw.push(word.to_string());
        }
    }
    // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/b/mod.rs` (a::b) also `a`; `self` is
    // the module itself. Paths not starting with one of the three are external crates or locals
    // of a `use` (child modules of a `mod.rs`, named without `self::` in 2018+ `use` trees).
    let here: Vec<&str> = module.split("::").collect();
    let mut out = Vec::new();
    for p in raw {
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let abs: Vec<String> = match segs.first().copied() {
            Some("crate") => segs.iter().map(|s| s.to_string()).collect(),
            Some("super") => {
                let mut base: Vec<String> = here.iter().map(|s| s.to_string()).collect();
                let mut it = segs.iter().peekable();
                while it.peek() == Some(&&"super") {
                    base.pop();
                    it.next();
                }
                base.extend(it.map(|s| s.to_string()));
                base
            }
            Some("self") => here
                .iter()
                .map(|s| s.to_string())
                .chain(segs[1..].iter().map(|s| s.to_string()))
                .collect(),
            Some(first) if is_mod_file && !first.is_empty() => here
                .iter()
                .map(|s| s.to_string())
                .chain(segs.iter().map(|s| s.to_string()))
                .collect(),
            _ => continue,
        };
        out.push(abs.join("::"));
    }
    out
}

/// The import graph: module -> modules it imports (itself and its ancestors' `mod` lines
/// excluded).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = library_files();
    let modules: BTreeSet<String> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut g = BTreeMap::new();
    for (module, path, text) in &files {
        // Files whose `use` trees may name child modules without `self::`.
        let is_mod = path.ends_with("mod.rs")
            || path.ends_with("lib.rs")
            || path.with_extension("").is_dir();
        let mut deps = BTreeSet::new();
        for p in paths(module, is_mod, text) {
            // The deepest module file the path names.
            let segs: Vec<&str> = p.split("::").collect();
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(t) = target {
                if &t != module {
                    deps.insert(t);
                }
            }
        }
        g.insert(module.clone(), deps);
    }
    g
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.insert(v, s.low[v].min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                s.low.insert(v, s.low[v].min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn library_modules_import_each_other_without_a_cycle() {
    let g = graph();
    assert!(g.len() > 30, "found only {} modules", g.len());
    let found = cycles(&g);
    let report: Vec<String> = found
        .iter()
        .map(|comp| {
            let edges: Vec<String> = comp
                .iter()
                .flat_map(|m| {
                    g[m].iter()
                        .filter(|d| comp.contains(d))
                        .map(move |d| format!("{m} -> {d}"))
                })
                .collect();
            format!("{} modules: {}", comp.len(), edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle() {
    // The checker itself: a two-module cycle, expanded `use` trees, `super` paths.
    let mut g = BTreeMap::new();
    let text_a = strip("use crate::b::{x, y::{z}};\n// use crate::c;\n");
    let text_b = strip("fn f() { super::a::g() }\n");
    let deps = |m: &str, t: &str| -> BTreeSet<String> {
        paths(m, false, t)
            .into_iter()
            .map(|p| p.split("::").take(2).collect::<Vec<_>>().join("::"))
            .filter(|p| p != m)
            .collect()
    };
    g.insert("crate::a".to_string(), deps("crate::a", &text_a));
    g.insert("crate::b".to_string(), deps("crate::b", &text_b));
    assert_eq!(
        g["crate::a"],
        BTreeSet::from(["crate::b".to_string()]),
        "a comment is no import"
    );
    assert_eq!(cycles(&g).len(), 1);
}

#[test]
fn no_library_module_reads_the_environment() {
    for (module, path, text) in library_files() {
        for needle in ["env::var", "env::vars", "option_env!", "env::set_var"] {
            assert!(
                !text.contains(needle),
                "{module} ({}) reads the environment ({needle}): take it as an option instead \
                 (ContextOptions), and read switches in src/cli/",
                path.display()
            );
        }
    }
}
