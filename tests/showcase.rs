//! The documented showcase rules hold against the bypasses that beat the old ones (issue 10,
//! item 11): the SQL rules of README.md, docs/policy.md and examples/databricks-policy.json are
//! allow-lists, and no example policy loads with a warning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
use proptest::prelude::*;
use serde_json::{Value, json};

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Statements that must never run unreviewed.
const BYPASSES: &[&str] = &[
    "/**/DELETE FROM users",
    "-- c\nDELETE FROM users",
    "SELECT 1; DELETE FROM users",
    "SELECT 1;DELETE FROM users",
    "SELECT 1 ; ; ",
    "INSERT INTO users VALUES (1)",
    "insert into users values (1)",
    "DELETE FROM users",
    "  DELETE FROM users",
    "UPDATE users SET admin = true",
    "DROP TABLE users",
    "WITH x AS (SELECT 1) DELETE FROM users",
    "SELECTED_FUNCTION()",
    "(SELECT 1)",
    "",
    "   ",
    "SELECT 1;\nDROP TABLE users",
    "SELECT 1 -- ;\nDELETE FROM users",
    "SELECT 1 /* ; */ DELETE",
];

/// Statements that run.
const PLAIN: &[&str] = &[
    "SELECT 1",
    "select * from t",
    "  SELECT a, b FROM t WHERE c = 'x'",
    "SELECT 1;",
    "SELECT 1 ;  \n",
    "Select\tcount(*)\nFROM t",
    "SELECT",
];

fn load(policy: &str) -> Policy {
    policy.parse::<Policy>().unwrap_or_else(|e| panic!("{e}\n{policy}"))
}

/// The decision of a fresh evaluator (the examples' limits must not interfere).
fn decide(policy: &Policy, statement: &str, context: &Value) -> DecisionKind {
    let args = json!({ "statement": statement });
    Evaluator::new(policy.clone())
        .evaluate(
            &ToolCall::new("execute_sql")
                .with_arguments(&args)
                .with_context(context)
                .with_session("s"),
        )
        .kind()
}

/// The first ```json block after `marker` in `text`.
fn json_block_after(text: &str, marker: &str) -> String {
    let from = text.find(marker).unwrap_or_else(|| panic!("no `{marker}`"));
    let rest = &text[from..];
    let start = rest.find("```json\n").unwrap() + "```json\n".len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_owned()
}

#[test]
fn the_readme_sql_rule_refuses_the_bypasses() {
    let policy = load(&json_block_after(&repo_file("README.md"), "A policy:"));
    let ctx = json!({});
    for s in BYPASSES {
        assert_eq!(decide(&policy, s, &ctx), DecisionKind::Deny, "{s:?}");
    }
    for s in PLAIN {
        assert_eq!(decide(&policy, s, &ctx), DecisionKind::Allow, "{s:?}");
    }
    assert_eq!(decide(&policy, "SELECT 1", &json!({"env": "prod"})), DecisionKind::Approve);
    assert!(policy.warnings().is_empty());
}

#[test]
fn the_policy_md_sql_rule_refuses_the_bypasses() {
    let rule = json_block_after(&repo_file("docs/policy.md"), "## Rules");
    let policy = load(&format!(r#"{{"version": "1", "default": "deny", "tools": {{ {rule} }} }}"#));
    let prod = json!({"env": "prod"});
    for s in BYPASSES {
        assert_eq!(decide(&policy, s, &prod), DecisionKind::Deny, "{s:?}");
    }
    for s in PLAIN {
        assert_eq!(decide(&policy, s, &prod), DecisionKind::Allow, "{s:?}");
    }
    assert!(policy.warnings().is_empty());
}

#[test]
fn the_databricks_sql_rule_asks_a_human_for_the_bypasses() {
    let policy = load(&repo_file("examples/databricks-policy.json"));
    let ctx = json!({});
    for s in BYPASSES {
        assert_eq!(decide(&policy, s, &ctx), DecisionKind::Approve, "{s:?}");
    }
    for s in PLAIN {
        assert_eq!(decide(&policy, s, &ctx), DecisionKind::Allow, "{s:?}");
    }
}

#[test]
fn no_example_policy_loads_with_a_warning() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with("policy.json") {
            let policy = Policy::from_path(&path).unwrap();
            assert!(policy.warnings().is_empty(), "{}: {:?}", path.display(), policy.warnings());
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

/// The `require` shape of docs/policy.md, alone.
const REQUIRE_FORM: &str = r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {
  "require": [{"conditions": [{"path": "args.statement", "op": "regex",
                               "value": "(?i)^\\s*SELECT\\b[^;]*;?\\s*\\z"}]}]}}}"#;

/// The databricks example's two `approve_if` checks are the exact complement of the `require`
/// shape: approval exactly when the shape does not match.
#[test]
fn the_approval_form_is_the_complement_of_the_require_form() {
    let databricks: Policy = repo_file("examples/databricks-policy.json").parse().unwrap();
    let require_form: Policy = REQUIRE_FORM.parse().unwrap();
    // One evaluator each; a fresh grant and session for every call, so that the example's
    // limits never interfere.
    let databricks = Evaluator::new(databricks);
    let require_form = Evaluator::new(require_form);
    let calls = std::sync::atomic::AtomicU64::new(0);
    let kind = |evaluator: &Evaluator, s: &str| {
        let args = json!({ "statement": s });
        let id = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
        evaluator
            .evaluate(
                &ToolCall::new("execute_sql")
                    .with_arguments(&args)
                    .with_grant(&id)
                    .with_session(&id),
            )
            .kind()
    };
    let parts = prop_oneof![
        Just("SELECT"),
        Just("select"),
        Just("SELEC"),
        Just("S"),
        Just("s"),
        Just("E"),
        Just("T"),
        Just("ſ"),
        Just("é"),
        Just("_"),
        Just("1"),
        Just(" "),
        Just("\n"),
        Just("\u{a0}"),
        Just(";"),
        Just("--"),
        Just("/*"),
        Just("*/"),
        Just("DELETE"),
        Just("x"),
        Just("("),
        Just("'"),
    ];
    let strings = proptest::collection::vec(parts, 0..8).prop_map(|p| p.concat());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1000));
    runner
        .run(&strings, |s| {
            let approve = kind(&databricks, &s) == DecisionKind::Approve;
            let shape = kind(&require_form, &s) == DecisionKind::Allow;
            prop_assert_eq!(approve, !shape, "{:?}", s);
            Ok(())
        })
        .unwrap();
    for s in BYPASSES.iter().chain(PLAIN) {
        assert_eq!(
            kind(&databricks, s) == DecisionKind::Approve,
            kind(&require_form, s) == DecisionKind::Deny,
            "{s:?}"
        );
    }
}
