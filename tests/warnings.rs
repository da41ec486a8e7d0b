//! Load warnings (issue 10, item 11): traps that load silently are reported with line, column,
//! pointer and a stable kind, and the policy still loads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mcp_policy::{Diagnostic, DiagnosticKind, Policy, Severity};

/// A document whose tool `t` has the rule `rule` on line 5.
fn tool(rule: &str) -> String {
    format!(
        "{{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {{\n    \"t\": {rule}\n  }}\n}}"
    )
}

fn warnings(doc: &str) -> Vec<Diagnostic> {
    let policy: Policy = doc.parse().unwrap_or_else(|e| panic!("{e}\n{doc}"));
    policy.warnings().to_vec()
}

/// The column of the first occurrence of `needle` on line 5 of `doc`.
fn column_of(doc: &str, needle: &str) -> usize {
    let line = doc.lines().nth(4).unwrap();
    line[..line.find(needle).unwrap()].chars().count() + 1
}

fn only(doc: &str) -> Diagnostic {
    let w = warnings(doc);
    assert_eq!(w.len(), 1, "{w:#?}");
    w.into_iter().next().unwrap()
}

#[test]
fn exists_on_grant_or_session() {
    for root in ["session", "grant"] {
        let doc = tool(&format!(
            r#"{{"deny_if": [{{"conditions": [{{"path": "{root}", "op": "exists", "value": false}}]}}]}}"#
        ));
        let w = only(&doc);
        assert_eq!(w.kind(), DiagnosticKind::ExistsAlwaysTrue);
        assert_eq!(w.severity(), Severity::Warning);
        assert_eq!(w.pointer(), "/tools/t/deny_if/0/conditions/0/op");
        assert_eq!((w.line(), w.column()), (5, column_of(&doc, "\"exists\"")));
        assert!(w.message().contains(&format!("`exists` on `{root}` is always false")), "{w}");
    }
    let doc = tool(r#"{"require": [{"conditions": [{"path": "/session", "op": "exists"}]}]}"#);
    assert!(only(&doc).message().contains("always true"));
}

#[test]
fn empty_in_and_not_in() {
    for (op, never) in [("in", "never true"), ("not_in", "never false")] {
        let doc = tool(&format!(
            r#"{{"require": [{{"conditions": [{{"path": "args.a", "op": "{op}", "value": []}}]}}]}}"#
        ));
        let w = only(&doc);
        assert_eq!(w.kind(), DiagnosticKind::EmptyList);
        assert_eq!(w.pointer(), "/tools/t/require/0/conditions/0/value");
        assert_eq!((w.line(), w.column()), (5, column_of(&doc, "[]")));
        assert!(w.message().contains(never), "{w}");
    }
}

#[test]
fn dollar_anchor() {
    let doc = tool(
        r#"{"approve_if": [{"conditions": [{"path": "args.sql", "op": "regex", "value": "^SELECT 1$"}]}]}"#,
    );
    let w = only(&doc);
    assert_eq!(w.kind(), DiagnosticKind::DollarAnchor);
    assert_eq!(w.pointer(), "/tools/t/approve_if/0/conditions/0/value");
    assert_eq!((w.line(), w.column()), (5, column_of(&doc, "\"^SELECT")));
    assert!(w.message().contains("\\z"), "{w}");
    // `\z`, an escaped `\$` and a `$` in a class are fine.
    for quiet in [r"^SELECT 1\\z", r"costs \\$5", r"[$]"] {
        let doc = tool(&format!(
            r#"{{"approve_if": [{{"conditions": [{{"path": "args.sql", "op": "regex", "value": "{quiet}"}}]}}]}}"#
        ));
        assert!(warnings(&doc).is_empty(), "{quiet}: {:?}", warnings(&doc));
    }
}

#[test]
fn unicode_digit_and_word_classes() {
    let doc = tool(
        r#"{"require": [{"conditions": [{"path": "args.id", "op": "regex", "value": "^\\d+-\\w+[\\d]\\z"}]}]}"#,
    );
    let w = only(&doc);
    assert_eq!(w.kind(), DiagnosticKind::UnicodeClass);
    assert_eq!((w.line(), w.column()), (5, column_of(&doc, "\"^\\\\d")));
    assert!(w.message().contains("`\\d` and `\\w`"), "{w}");
    assert!(w.message().contains("[0-9]"), "{w}");
    for quiet in [r"^[0-9]+\\z", r"(?-u)^\\d+\\z", r"^(?-u:\\d)+\\z"] {
        let doc = tool(&format!(
            r#"{{"require": [{{"conditions": [{{"path": "args.id", "op": "regex", "value": "{quiet}"}}]}}]}}"#
        ));
        assert!(warnings(&doc).is_empty(), "{quiet}: {:?}", warnings(&doc));
    }
}

#[test]
fn deny_if_on_an_untyped_argument() {
    let doc = tool(
        r#"{"deny_if": [{"conditions": [{"path": "args.statement", "op": "contains", "value": "; drop"}]}]}"#,
    );
    let w = only(&doc);
    assert_eq!(w.kind(), DiagnosticKind::UntypedArgument);
    assert_eq!(w.pointer(), "/tools/t/deny_if/0/conditions/0/path");
    assert_eq!((w.line(), w.column()), (5, column_of(&doc, "\"args.statement\"")));
    assert!(w.message().contains("`args.statement`"), "{w}");

    // Typed by the tool's schema, or by all_tools' schema: quiet.
    let typed = tool(
        r#"{"arguments": {"properties": {"statement": {"type": "string"}}}, "deny_if": [{"conditions": [{"path": "args.statement", "op": "contains", "value": "; drop"}]}]}"#,
    );
    assert!(warnings(&typed).is_empty());
    let shared = r#"{"version": "1", "default": "deny",
      "all_tools": {"arguments": {"properties": {"q": {"type": "string"}}}},
      "tools": {"t": {"deny_if": [{"conditions": [{"path": "args.q", "op": "eq", "value": "x"}]}]}}}"#;
    assert!(warnings(shared).is_empty());
    // `exists` does not care about the type; `require` fails closed anyway.
    let quiet = tool(
        r#"{"deny_if": [{"conditions": [{"path": "args.a", "op": "exists"}]}], "require": [{"conditions": [{"path": "args.b", "op": "eq", "value": 1}]}]}"#,
    );
    assert!(warnings(&quiet).is_empty());
}

#[test]
fn kinds_serialise_as_stable_names() {
    let doc =
        tool(r#"{"require": [{"conditions": [{"path": "args.a", "op": "in", "value": []}]}]}"#);
    let w = serde_json::to_value(&warnings(&doc)[0]).unwrap();
    assert_eq!(w["kind"], "empty_list");
    assert_eq!(w["severity"], "warning");
    assert_eq!(w["line"], 5);
    assert_eq!(w["pointer"], "/tools/t/require/0/conditions/0/value");
    for (kind, name) in [
        (DiagnosticKind::ExistsAlwaysTrue, "exists_always_true"),
        (DiagnosticKind::EmptyList, "empty_list"),
        (DiagnosticKind::DollarAnchor, "dollar_anchor"),
        (DiagnosticKind::UnicodeClass, "unicode_class"),
        (DiagnosticKind::UntypedArgument, "untyped_argument"),
        (DiagnosticKind::UnknownFormat, "unknown_format"),
        (DiagnosticKind::UnknownKey, "unknown_key"),
        (DiagnosticKind::ConflictingCounter, "conflicting_counter"),
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), name);
        assert_eq!(kind.as_str(), name);
    }
    // Errors are errors.
    let err = "{\"version\": \"2\"}".parse::<Policy>().unwrap_err();
    assert!(err.diagnostics().iter().all(|d| d.severity() == Severity::Error));
}

#[test]
fn a_policy_without_traps_has_no_warnings() {
    let doc = tool(
        r#"{"arguments": {"type": "object", "properties": {"n": {"type": "integer"}}}, "deny_if": [{"conditions": [{"path": "args.n", "op": "gt", "value": 5}]}], "require": [{"conditions": [{"path": "session", "op": "neq", "value": null}]}]}"#,
    );
    assert!(warnings(&doc).is_empty(), "{:?}", warnings(&doc));
}
