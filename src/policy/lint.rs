//! Lint: traps that load but rarely mean what their author meant. Each is a warning (a
//! [`Diagnostic`](super::Diagnostic) of [`Severity::Warning`](super::Severity::Warning)) with its
//! line, column, JSON Pointer and a stable [`DiagnosticKind`]; the policy still loads.
//!
//! The checks read the loaded document only, so they run once per load, in one pass over the
//! rules. The checks that need the server's tool list are [`lint`] (in `tools`), located by
//! the [`Places`] found at load.

use regex_syntax::ast::{self, Ast};
use serde_json::Value;

use super::diagnostics::DiagnosticKind;
use super::model::{Condition, Op, PolicyDocument, Rule};
use super::path::{self, Root};
use crate::json::pointer::join;

mod places;
mod tools;

pub(crate) use places::Places;
pub use tools::{ToolInfo, lint};

/// A warning located by pointer, before lines and columns are known.
pub(crate) struct Finding {
    pub(crate) pointer: String,
    pub(crate) kind: DiagnosticKind,
    pub(crate) message: String,
}

/// Every warning of a loaded document, in rule order.
pub(crate) fn document(doc: &PolicyDocument) -> Vec<Finding> {
    let mut out = Vec::new();
    let shared = doc.all_tools.as_ref().and_then(|r| r.arguments.as_ref());
    if let Some(rule) = &doc.all_tools {
        self::rule(rule, "/all_tools", None, shared, &mut out);
    }
    for (key, rule) in &doc.tools {
        let ptr = join("/tools", key);
        self::rule(rule, &ptr, rule.arguments.as_ref(), shared, &mut out);
    }
    out
}

fn rule(
    rule: &Rule,
    ptr: &str,
    own: Option<&Value>,
    shared: Option<&Value>,
    out: &mut Vec<Finding>,
) {
    let checks = [
        ("require", rule.require.iter().map(|c| &c.conditions).collect::<Vec<_>>()),
        ("deny_if", rule.deny_if.iter().map(|c| &c.conditions).collect()),
        ("approve_if", rule.approve_if.iter().map(|c| &c.conditions).collect()),
    ];
    for (key, list) in checks {
        for (i, conditions) in list.into_iter().enumerate() {
            for (j, c) in conditions.iter().enumerate() {
                let cptr = format!("{ptr}/{key}/{i}/conditions/{j}");
                condition(c, &cptr, out);
                if key == "deny_if" {
                    untyped(c, &cptr, own, shared, out);
                }
            }
        }
    }
}

fn condition(c: &Condition, ptr: &str, out: &mut Vec<Finding>) {
    let mut warn = |at: &str, kind: DiagnosticKind, message: String| {
        out.push(Finding { pointer: join(ptr, at), kind, message });
    };
    let root = path::parse(&c.path).ok().map(|p| p.root);
    match (c.op, &c.value) {
        (Op::Exists, v) if matches!(root, Some(Root::Grant | Root::Session)) => {
            let want = !matches!(v, Some(Value::Bool(false)));
            warn(
                "op",
                DiagnosticKind::ExistsAlwaysTrue,
                format!(
                    "`exists` on `{}` is always {}: the grant is always a string, and a call \
                     without a session reads `null`, which exists; to test for a missing \
                     session write `{{\"op\": \"eq\", \"value\": null}}`",
                    c.path,
                    if want { "true" } else { "false" }
                ),
            );
        }
        (Op::In | Op::NotIn, Some(Value::Array(items))) if items.is_empty() => warn(
            "value",
            DiagnosticKind::EmptyList,
            if c.op == Op::In {
                "`in` with an empty list is never true: a present value is unknown (so `deny_if` \
                 fires and `require` fails on every call that has it), and `null` or absent is \
                 not in it"
            } else {
                "`not_in` with an empty list is never false: a present value is unknown (so \
                 `deny_if` fires and `require` fails on every call that has it), and `null` or \
                 absent is not in it"
            }
            .to_owned(),
        ),
        (Op::Regex, Some(Value::String(re))) => regex(re, &mut warn),
        _ => {}
    }
}

/// `$` anchors and Unicode `\d` / `\w` in a `regex` value.
fn regex(re: &str, warn: &mut impl FnMut(&str, DiagnosticKind, String)) {
    let Ok(ast) = ast::parse::Parser::new().parse(re) else { return };
    let mut dollar = false;
    let mut perl: Vec<char> = Vec::new();
    let ascii_only = unicode_disabled(re);
    visit(&ast, &mut |a| match a {
        Ast::Assertion(x) if x.kind == ast::AssertionKind::EndLine => dollar = true,
        Ast::ClassPerl(x) if !ascii_only => {
            let c = match (&x.kind, x.negated) {
                (ast::ClassPerlKind::Digit, false) => 'd',
                (ast::ClassPerlKind::Digit, true) => 'D',
                (ast::ClassPerlKind::Word, false) => 'w',
                (ast::ClassPerlKind::Word, true) => 'W',
                _ => return,
            };
            if !perl.contains(&c) {
                perl.push(c);
            }
        }
        _ => {}
    });
    if dollar {
        warn(
            "value",
            DiagnosticKind::DollarAnchor,
            "`$` in a `regex` also matches before a final newline, so `\"DELETE\\n\"` slips past \
             a rule written for `\"DELETE\"`: anchor the end with `\\z`"
                .to_owned(),
        );
    }
    if !perl.is_empty() {
        let list: Vec<String> = perl.iter().map(|c| format!("`\\{c}`")).collect();
        warn(
            "value",
            DiagnosticKind::UnicodeClass,
            format!(
                "{} in a `regex` match{} any Unicode digit or letter (`٣`, `３`, `é`), not only \
                 ASCII: write `[0-9]` or `[A-Za-z0-9_]`, or `(?-u:\\d)`",
                list.join(" and "),
                if list.len() == 1 { "es" } else { "" }
            ),
        );
    }
}

/// Whether the pattern turns Unicode mode off anywhere (`(?-u)`, `(?i-u:...)`): then its `\d`
/// may well be ASCII, and the check stays quiet rather than guess.
fn unicode_disabled(re: &str) -> bool {
    re.match_indices("(?").any(|(i, _)| {
        re.get(i + 2..)
            .and_then(|rest| rest.split([')', ':']).next())
            .is_some_and(|flags| flags.split_once('-').is_some_and(|(_, off)| off.contains('u')))
    })
}

fn visit(a: &Ast, f: &mut impl FnMut(&Ast)) {
    f(a);
    match a {
        Ast::Repetition(r) => visit(&r.ast, f),
        Ast::Group(g) => visit(&g.ast, f),
        Ast::Alternation(x) => x.asts.iter().for_each(|a| visit(a, f)),
        Ast::Concat(x) => x.asts.iter().for_each(|a| visit(a, f)),
        Ast::ClassBracketed(c) => class_set(&c.kind, f),
        _ => {}
    }
}

fn class_set(set: &ast::ClassSet, f: &mut impl FnMut(&Ast)) {
    match set {
        ast::ClassSet::Item(item) => class_item(item, f),
        ast::ClassSet::BinaryOp(op) => {
            class_set(&op.lhs, f);
            class_set(&op.rhs, f);
        }
    }
}

fn class_item(item: &ast::ClassSetItem, f: &mut impl FnMut(&Ast)) {
    match item {
        ast::ClassSetItem::Perl(p) => f(&Ast::ClassPerl(Box::new(p.clone()))),
        ast::ClassSetItem::Bracketed(b) => class_set(&b.kind, f),
        ast::ClassSetItem::Union(u) => u.items.iter().for_each(|i| class_item(i, f)),
        _ => {}
    }
}

/// A `deny_if` condition on an argument that no `arguments` schema gives a type.
fn untyped(
    c: &Condition,
    ptr: &str,
    own: Option<&Value>,
    shared: Option<&Value>,
    out: &mut Vec<Finding>,
) {
    if c.op == Op::Exists {
        return;
    }
    let Ok(p) = path::parse(&c.path) else { return };
    if p.root != Root::Args || p.segments.is_empty() {
        return;
    }
    let keys: Vec<&str> = p.segments.iter().map(|s| &*s.key).collect();
    if [own, shared].into_iter().flatten().any(|schema| types(schema, &keys)) {
        return;
    }
    out.push(Finding {
        pointer: join(ptr, "path"),
        kind: DiagnosticKind::UntypedArgument,
        message: format!(
            "`deny_if` tests `{}` with `{}`, but no `arguments` schema gives that argument a \
             type: a value of another type (an array where a string was meant, say) may not \
             match as intended; pin it with `\"arguments\": {{\"properties\": {{...: \
             {{\"type\": ...}}}}}}`",
            c.path,
            c.op.as_str()
        ),
    });
}

/// Whether `schema` pins the type of the value at `keys` (through `properties`, or `items` for
/// an array index): a `type`, `const` or `enum` there. A `$ref` on the way counts as typed (the
/// check cannot follow it and stays quiet rather than guess).
fn types(schema: &Value, keys: &[&str]) -> bool {
    let Value::Object(map) = schema else { return false };
    if map.contains_key("$ref") || map.contains_key("$dynamicRef") {
        return true;
    }
    let Some((first, rest)) = keys.split_first() else {
        return ["type", "const", "enum"].iter().any(|k| map.contains_key(*k));
    };
    let by_key = map.get("properties").and_then(|p| p.get(*first));
    let by_index = first
        .parse::<usize>()
        .ok()
        .and_then(|i| map.get("prefixItems").and_then(|p| p.get(i)).or_else(|| map.get("items")));
    [by_key, by_index].into_iter().flatten().any(|s| types(s, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_off_is_recognised() {
        assert!(unicode_disabled(r"(?-u)\d"));
        assert!(unicode_disabled(r"(?i-u:\w+)"));
        assert!(!unicode_disabled(r"(?i)\d"));
        assert!(!unicode_disabled(r"\d"));
    }

    #[test]
    fn schema_typing() {
        let s = serde_json::json!({"properties": {"a": {"type": "string"},
            "b": {"properties": {"c": {"enum": [1]}}}, "l": {"items": {"type": "string"}}}});
        assert!(types(&s, &["a"]));
        assert!(types(&s, &["b", "c"]));
        assert!(types(&s, &["l", "0"]));
        assert!(!types(&s, &["b"]));
        assert!(!types(&s, &["z"]));
        assert!(!types(&serde_json::json!(true), &["a"]));
    }
}
