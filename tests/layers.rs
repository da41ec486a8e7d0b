//! The layers of the crate, checked: imports flow one way.
//!
//! ```text
//! json/     (leaf: positioned reader, JSON Pointer, canonical JSON)
//! fasthash  (leaf: hashing and comparing short strings for the per-call lookups)
//! counter/  (the store contract, the in-memory store, clocks, windows)  imports fasthash
//! policy/   (model, loader, compiled form, diagnostics, lint, paths, patterns)  imports json, fasthash
//! eval/     (evaluation, decisions, approvals)  imports json, fasthash, counter, policy
//! lib.rs    (the facade: re-exports only)
//! ```
//!
//! This test reads every file under `src/`, strips comments and literals, resolves every
//! `crate::…` and `super::…` path (grouped `use crate::{a::…, b::…}` included) to the top-level
//! module it names, and fails when a module reaches a layer it may not import. `docs/architecture.md`
//! describes the layers.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules each layer may import (besides itself).
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    match layer {
        "json" => Some(&[]),
        "fasthash" => Some(&[]),
        "counter" => Some(&["fasthash"]),
        "policy" => Some(&["json", "fasthash"]),
        "eval" => Some(&["json", "fasthash", "counter", "policy"]),
        _ => None,
    }
}

/// `lib.rs` is the facade: it may re-export from every layer.
const FACADE: &str = "lib.rs";

/// Source text with comments, string literals and char literals blanked out (lengths kept).
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for ch in &b[i..j.min(b.len())] {
                out.push(if *ch == '\n' { '\n' } else { ' ' });
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(if b[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): blank only literals.
            let end = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    (i..=e).for_each(|_| out.push(' '));
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The module path of a source file: `src/eval/condition.rs` → `["eval", "condition"]`,
/// `src/eval/mod.rs` → `["eval"]`, `src/lib.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    let start = i;
    while chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

fn skip_sep(chars: &[char], mut i: usize) -> Option<usize> {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') { Some(i + 2) } else { None }
}

/// The first segments of the paths in the group starting after `{` at `i`.
fn group_heads(chars: &[char], i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut k = i;
    while k < chars.len() {
        match chars[k] {
            '{' => {
                depth += 1;
                k += 1;
            }
            '}' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                k += 1;
            }
            ',' if depth == 0 => {
                expect_head = true;
                k += 1;
            }
            c if c.is_alphanumeric() || c == '_' => {
                let (word, end) = ident_at(chars, k);
                if expect_head && depth == 0 {
                    heads.push(word);
                    expect_head = false;
                }
                k = end;
            }
            _ => k += 1,
        }
    }
    heads
}

/// Every top-level module (or root item) that `src` (the text of a file at module path
/// `module`) names through `crate::…` or `super::…`. Errors for a `super` above the root.
fn targets(src: &str, module: &[String]) -> Result<BTreeSet<String>, String> {
    let text = strip(src);
    let chars: Vec<char> = text.chars().collect();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if !boundary || !(chars[i] == 'c' || chars[i] == 's') {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(&chars, i);
        if word != "crate" && word != "super" {
            i = end.max(i + 1);
            continue;
        }
        // Resolve a chain of `super::` against the file's module path.
        let mut base: Vec<String> = if word == "crate" { Vec::new() } else { module.to_vec() };
        let mut at = end;
        let mut word = word;
        loop {
            if word == "super" && base.pop().is_none() {
                return Err(format!("`super` above the crate root in `{}`", module.join("::")));
            }
            let Some(after) = skip_sep(&chars, at) else { break };
            let (next, next_end) = ident_at(&chars, after);
            if next == "super" && word == "super" {
                word = next;
                at = next_end;
                continue;
            }
            if next.is_empty() {
                // A group: `crate::{a::…, b::…}`.
                let mut k = after;
                while chars.get(k).is_some_and(|c| c.is_whitespace()) {
                    k += 1;
                }
                if chars.get(k) == Some(&'{') {
                    for head in group_heads(&chars, k + 1) {
                        let mut p = base.clone();
                        p.push(head);
                        found.insert(p[0].clone());
                    }
                } else if let Some(first) = base.first() {
                    found.insert(first.clone());
                }
            } else {
                let mut p = base.clone();
                p.push(next);
                found.insert(p[0].clone());
            }
            break;
        }
        // `use super::*;` or a bare `super` (e.g. `super::*` in a top-level file).
        if let Some(first) = base.first() {
            found.insert(first.clone());
        }
        i = at.max(i + 1);
    }
    Ok(found)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The violations in one file: `(file, imported layer)`.
fn violations(rel: &Path, src: &str) -> Vec<String> {
    let module = module_of(rel);
    let Some(layer) = module.first() else {
        // lib.rs: the facade.
        assert_eq!(rel, Path::new(FACADE));
        return Vec::new();
    };
    let Some(ok) = allowed(layer) else {
        return vec![format!(
            "`{}` is in no layer: add it to `allowed` in tests/layers.rs and to docs/architecture.md",
            rel.display()
        )];
    };
    match targets(src, &module) {
        Err(e) => vec![e],
        Ok(names) => names
            .into_iter()
            .filter(|t| t != layer && allowed(t).is_some() && !ok.contains(&t.as_str()))
            .map(|t| {
                format!(
                    "`src/{}` imports `crate::{t}`, a layer above or beside `{layer}`",
                    rel.display()
                )
            })
            .collect(),
    }
}

#[test]
fn imports_flow_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "found only {} files under src/", files.len());
    let mut problems = Vec::new();
    let mut layers = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if let Some(top) = module_of(rel).first() {
            layers.insert(top.clone());
        }
        problems.extend(violations(rel, &fs::read_to_string(f).unwrap()));
    }
    assert_eq!(
        layers.into_iter().collect::<Vec<_>>(),
        ["counter", "eval", "fasthash", "json", "policy"],
        "the top-level modules changed: update the layers here and in docs/architecture.md"
    );
    assert!(problems.is_empty(), "imports against the layers:\n{}", problems.join("\n"));
}

/// The checker itself: it must see each form of import, and not comments or strings.
#[test]
fn the_checker_sees_every_form_of_import() {
    let p = |s: &str| Path::new(s).to_path_buf();
    let bad = |rel: &str, src: &str| !violations(&p(rel), src).is_empty();
    assert!(bad("policy/load.rs", "use crate::eval::condition::Test;"));
    assert!(bad("policy/load.rs", "fn f() { crate::eval::x(); }"));
    assert!(bad("policy/load.rs", "use crate::{json::pointer, eval::Decision};"));
    assert!(bad(
        "policy/load.rs",
        "use crate::{\n    json::{pointer, source},\n    counter::Clock,\n};"
    ));
    assert!(bad("policy/mod.rs", "use super::eval::Evaluator;"));
    assert!(bad("policy/load.rs", "use super::super::eval::Evaluator;"));
    assert!(bad("json/source.rs", "use crate::policy::model;"));
    assert!(bad("counter/store.rs", "use crate::json::pointer;"));
    assert!(bad("counter/memory.rs", "use crate :: eval :: Decision;"));
    assert!(bad("extra/thing.rs", "fn f() {}"), "a new top-level module must be given a layer");
    // Allowed: downward, within a layer, and anything not code.
    assert!(!bad(
        "eval/evaluator.rs",
        "use crate::{counter::Clock, policy::Policy, json::pointer};"
    ));
    assert!(!bad("eval/condition.rs", "use super::call::ToolCall; mod tests { use super::*; }"));
    assert!(!bad("policy/load.rs", "use crate::json::source;\nuse super::model::Op;"));
    assert!(!bad("policy/load.rs", "// use crate::eval::x;\n/* crate::eval */ fn f() {}"));
    assert!(!bad("policy/load.rs", "/// [`crate::eval::Evaluator`]\nfn f() {}"));
    assert!(!bad("policy/load.rs", "const S: &str = \"crate::eval::x\";"));
    assert!(!bad("policy/load.rs", "const S: &str = r#\"use crate::eval::x\"#;"));
    assert!(!bad("policy/load.rs", "fn f<'a>(x: &'a str) -> char { let _ = x; '\"' }"));
    assert!(!bad("lib.rs", "pub use eval::Evaluator; pub use crate::policy::Policy;"));
}
