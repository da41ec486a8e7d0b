//! `Policy::try_from(PolicyDocument)`: the compile stage of the loader on a document built in a
//! program. It must accept what the loader accepts (same digest, same decisions), reject what
//! it rejects (same pointers, kinds and messages, without positions), and never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use mcp_policy::model::{
    ApprovalCheck, Check, Condition, DefaultDecision, Limit, Op, PolicyDocument, Rule, Scope,
    Window, WindowUnit,
};
use mcp_policy::{DiagnosticKind, Evaluator, Policy, ToolCall};
use serde_json::json;

const EXAMPLES: &[&str] = &[
    include_str!("../examples/seed-policy.json"),
    include_str!("../examples/databricks-policy.json"),
    include_str!("../examples/spend-policy.json"),
];

/// `(pointer, kind, message)` of each diagnostic, sorted: positions aside, what both paths say.
fn said(err: &mcp_policy::InvalidPolicy) -> Vec<(String, DiagnosticKind, String)> {
    let mut v: Vec<_> = err
        .diagnostics()
        .iter()
        .map(|d| (d.pointer().to_owned(), d.kind(), d.message().to_owned()))
        .collect();
    v.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    v
}

#[test]
fn a_document_compiles_to_the_policy_its_text_loads_to() {
    for text in EXAMPLES {
        let loaded: Policy = text.parse().unwrap();
        // The document the loader read, and the same document read by serde.
        let from_model = Policy::try_from(loaded.document().clone()).unwrap();
        let from_serde =
            Policy::try_from(serde_json::from_str::<PolicyDocument>(text).unwrap()).unwrap();
        for built in [&from_model, &from_serde] {
            assert_eq!(built.digest(), loaded.digest());
            assert_eq!(built.document(), loaded.document());
            assert_eq!(built.warnings().len(), loaded.warnings().len());
            for tool in loaded.document().tools.keys() {
                assert_eq!(built.rule_key(tool), loaded.rule_key(tool));
                assert_eq!(built.is_visible(tool), loaded.is_visible(tool));
            }
        }
    }
}

#[test]
fn a_document_built_by_hand_has_the_digest_of_the_same_text() {
    let mut doc = PolicyDocument::new(DefaultDecision::Deny);
    doc.description = Some("payments".to_owned());
    doc.hide = vec!["admin_*".to_owned()];
    doc.all_tools = Some(Rule {
        limits: vec![Limit::new("calls", Window::Seconds(60), 100)],
        ..Rule::default()
    });
    doc.tools.insert(
        "transfer".to_owned(),
        Rule {
            arguments: Some(
                json!({"type": "object", "properties": {"amount": {"type": "number"}}}),
            ),
            require: vec![Check {
                name: Some("eur".to_owned()),
                on_deny: Some("EUR only".to_owned()),
                ..Check::new(vec![Condition::new("args.currency", Op::Eq, json!("EUR"))])
            }],
            deny_if: vec![Check::new(vec![
                Condition::new("args.to", Op::Regex, json!("^EXT-[0-9]+")),
                Condition::exists("args.to"),
            ])],
            approve_if: vec![ApprovalCheck::new(vec![Condition::new(
                "args.amount",
                Op::Gt,
                json!(1000),
            )])],
            limits: vec![Limit {
                scope: Scope::Global,
                increment_from: Some("args.amount".to_owned()),
                sliding: true,
                ..Limit::new("spend", Window::Named(WindowUnit::Day), 10_000)
            }],
            ..Rule::default()
        },
    );
    let text = r#"{
      "version": "1", "default": "deny", "description": "payments", "hide": ["admin_*"],
      "all_tools": {"limits": [{"counter": "calls", "window": 60, "max": 100}]},
      "tools": {"transfer": {
        "arguments": {"type": "object", "properties": {"amount": {"type": "number"}}},
        "require": [{"name": "eur", "on_deny": "EUR only",
                     "conditions": [{"path": "args.currency", "op": "eq", "value": "EUR"}]}],
        "deny_if": [{"conditions": [{"path": "args.to", "op": "regex", "value": "^EXT-[0-9]+"},
                                    {"path": "args.to", "op": "exists"}]}],
        "approve_if": [{"conditions": [{"path": "args.amount", "op": "gt", "value": 1000}]}],
        "limits": [{"counter": "spend", "window": "day", "max": 10000, "scope": "global",
                    "increment_from": "args.amount", "sliding": true}]}}
    }"#;
    let loaded: Policy = text.parse().unwrap();
    let built = Policy::try_from(doc).unwrap();
    assert_eq!(built.digest(), loaded.digest());

    // And they decide alike, the regex (compiled on first use) included.
    let (a, b) = (Evaluator::new(built), Evaluator::new(loaded));
    for args in [
        json!({"currency": "EUR", "to": "DE-1", "amount": 5}),
        json!({"currency": "EUR", "to": "EXT-42", "amount": 5}),
        json!({"currency": "USD", "to": "DE-1", "amount": 5}),
        json!({"currency": "EUR", "to": "DE-1", "amount": 5000}),
    ] {
        let call = ToolCall::new("transfer").with_arguments(&args).with_grant("g");
        let (x, y) = (a.evaluate(&call), b.evaluate(&call));
        assert_eq!(x.kind(), y.kind(), "{args}");
        assert_eq!(x.rule(), y.rule(), "{args}");
    }
    assert!(!a.evaluate(&ToolCall::new("admin_reset")).is_allowed());
}

/// Documents that read (serde and the loader's read stage both accept their shape) but do not
/// compile: each problem the compile stage finds.
fn invalid_documents() -> Vec<(&'static str, &'static str, DiagnosticKind)> {
    use DiagnosticKind as K;
    let t = |rule: &str| -> String {
        format!(r#"{{"version": "1", "default": "deny", "tools": {{"t": {rule}}}}}"#)
    };
    let cond = |c: &str| t(&format!(r#"{{"deny_if": [{{"conditions": [{c}]}}]}}"#));
    let lim = |l: &str| t(&format!(r#"{{"limits": [{l}]}}"#));
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        (r#"{"version": "2", "default": "deny"}"#, "/version", K::UnsupportedVersion),
        (r#"{"version": "1", "default": "deny", "hide": ["a", ""]}"#, "/hide/1", K::InvalidValue),
        (r#"{"version": "1", "default": "deny", "tools": {"": {}}}"#, "/tools/", K::InvalidValue),
        (
            r#"{"version": "1", "default": "deny", "tools": {"a_*": {}, "*_b": {}}}"#,
            "/tools/a_*",
            K::AmbiguousPattern,
        ),
        (leak(cond(r#"{"path": "argz.a", "op": "eq", "value": 1}"#)), "", K::InvalidPath),
        (leak(cond(r#"{"path": "amount", "op": "eq", "value": 1}"#)), "", K::InvalidPath),
        (leak(cond(r#"{"path": "args.s", "op": "regex", "value": "("}"#)), "", K::InvalidRegex),
        (
            leak(cond(r#"{"path": "args.s", "op": "regex", "value": "\\w{5000}"}"#)),
            "",
            K::InvalidRegex,
        ),
        (leak(cond(r#"{"path": "args.s", "op": "regex", "value": 5}"#)), "", K::WrongType),
        (leak(cond(r#"{"path": "args.s", "op": "gt", "value": "5"}"#)), "", K::WrongType),
        (leak(cond(r#"{"path": "args.s", "op": "in", "value": 5}"#)), "", K::WrongType),
        (leak(cond(r#"{"path": "args.s", "op": "eq"}"#)), "", K::MissingKey),
        (leak(cond(r#"{"path": "args.p", "op": "within", "value": "tmp"}"#)), "", K::InvalidValue),
        (leak(cond(r#"{"path": "args.p", "op": "within", "value": []}"#)), "", K::InvalidValue),
        (leak(cond(r#"{"path": "args.p", "op": "within", "value": ["/a", 1]}"#)), "", K::WrongType),
        (leak(t(r#"{"arguments": {"type": "numbr"}}"#)), "", K::InvalidSchema),
        (leak(t(r#"{"arguments": {"format": "nope"}}"#)), "", K::UnknownFormat),
        (leak(t(r#"{"arguments": 5}"#)), "/tools/t/arguments", K::WrongType),
        (leak(lim(r#"{"counter": "", "window": "minute", "max": 1}"#)), "", K::InvalidValue),
        (leak(lim(r#"{"counter": "c", "window": "minute", "max": 0}"#)), "", K::InvalidValue),
        (leak(lim(r#"{"counter": "c", "window": 0, "max": 1}"#)), "", K::InvalidValue),
        (
            leak(lim(r#"{"counter": "c", "window": 1, "max": 9007199254740993}"#)),
            "",
            K::InvalidValue,
        ),
        (
            leak(lim(r#"{"counter": "c", "window": "minute", "max": 2, "increment": 3}"#)),
            "",
            K::InvalidValue,
        ),
        (
            leak(lim(
                r#"{"counter": "c", "window": "minute", "max": 2, "increment": 1, "increment_from": "args.n"}"#,
            )),
            "",
            K::InvalidValue,
        ),
        (
            leak(lim(r#"{"counter": "c", "window": "minute", "max": 2, "increment_from": "n"}"#)),
            "",
            K::InvalidPath,
        ),
        (
            leak(t(r#"{"limits": [{"counter": "c", "window": "minute", "max": 2},
                               {"counter": "c", "window": "hour", "max": 2}]}"#)),
            "/tools/t/limits/1",
            K::ConflictingCounter,
        ),
    ]
}

#[test]
fn a_document_that_does_not_compile_is_reported_as_its_text_is_without_positions() {
    for (text, pointer, kind) in invalid_documents() {
        let Err(from_text) = Policy::from_json_str(text) else { panic!("{text}: loads") };
        let from_text = match from_text {
            mcp_policy::PolicyError::Invalid(e) => e,
            other => panic!("{text}: {other}"),
        };
        let document: PolicyDocument = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{text}: serde does not read it: {e}"));
        let from_document = Policy::try_from(document).unwrap_err();
        assert_eq!(said(&from_document), said(&from_text), "{text}");
        let d = from_document.diagnostics().iter().find(|d| d.kind() == kind);
        let d = d.unwrap_or_else(|| panic!("{text}: no {kind:?}: {from_document}"));
        if !pointer.is_empty() {
            assert_eq!(d.pointer(), pointer, "{text}");
        }
        // No text, no position; the text's diagnostics have one.
        assert!(from_document.diagnostics().iter().all(|d| (d.line(), d.column()) == (0, 0)));
        assert!(from_text.diagnostics().iter().all(|d| d.line() >= 1 && d.column() >= 1));
        // Displayed without the `0:0:` of a missing position, with the pointer.
        let shown = from_document.to_string();
        assert!(!shown.contains("0:0:"), "{shown}");
        assert!(shown.contains(&format!("(at {})", d.pointer())), "{shown}");
    }
}

#[test]
fn every_problem_of_a_document_is_reported_at_once() {
    let mut doc = PolicyDocument::new(DefaultDecision::Allow);
    doc.version = "0".to_owned();
    doc.hide.push(String::new());
    let mut tools = BTreeMap::new();
    tools.insert(
        "a".to_owned(),
        Rule { limits: vec![Limit::new("", Window::Seconds(0), 0)], ..Rule::default() },
    );
    tools.insert(
        "b".to_owned(),
        Rule {
            require: vec![Check::new(vec![Condition::new("nowhere.x", Op::Regex, json!("["))])],
            ..Rule::default()
        },
    );
    doc.tools = tools;
    let err = Policy::try_from(doc).unwrap_err();
    let pointers: Vec<&str> = err.diagnostics().iter().map(|d| d.pointer()).collect();
    assert_eq!(
        pointers,
        [
            "/version",
            "/hide/0",
            "/tools/a/limits/0/counter",
            "/tools/a/limits/0/window",
            "/tools/a/limits/0/max",
            "/tools/b/require/0/conditions/0/path",
            "/tools/b/require/0/conditions/0/value",
        ]
    );
}

#[test]
fn warnings_of_a_document_have_pointers_and_no_positions() {
    let mut doc = PolicyDocument::new(DefaultDecision::Deny);
    doc.tools.insert(
        "t".to_owned(),
        Rule {
            approve_if: vec![ApprovalCheck::new(vec![Condition::new(
                "args.sql",
                Op::Regex,
                json!("^SELECT [a-z]+$"),
            )])],
            ..Rule::default()
        },
    );
    let policy = Policy::try_from(doc).unwrap();
    let w = &policy.warnings()[0];
    assert_eq!(w.kind(), DiagnosticKind::DollarAnchor);
    assert_eq!(w.pointer(), "/tools/t/approve_if/0/conditions/0/value");
    assert_eq!((w.line(), w.column()), (0, 0));
    assert!(w.to_string().starts_with("warning: "), "{w}");
}

#[test]
fn a_document_from_a_json_value_is_a_documented_path() {
    let doc: PolicyDocument = serde_json::from_value(json!({
        "version": "1", "default": "deny",
        "tools": {"run": {"deny_if": [{"conditions": [
            {"path": "args.cmd", "op": "regex", "value": "(?i)\\brm\\b"}]}]}}
    }))
    .unwrap();
    let evaluator = Evaluator::new(Policy::try_from(doc).unwrap());
    let deny = json!({"cmd": "RM -rf /"});
    let allow = json!({"cmd": "ls"});
    assert!(!evaluator.evaluate(&ToolCall::new("run").with_arguments(&deny)).is_allowed());
    assert!(evaluator.evaluate(&ToolCall::new("run").with_arguments(&allow)).is_allowed());
}
