//! The tool-list lint (`mcp_policy::lint`): unused rules and hide entries, unguarded risky tools,
//! and look-alike names with real confusables (Cyrillic, fullwidth, zero-width, bidi).

use mcp_policy::{DiagnosticKind, Policy, Severity, ToolInfo, lint};

fn tools(names: &[&str]) -> Vec<ToolInfo> {
    names.iter().map(|n| ToolInfo::new(*n)).collect()
}

fn kinds(policy: &Policy, list: &[ToolInfo]) -> Vec<(DiagnosticKind, String)> {
    lint(policy, list).iter().map(|d| (d.kind(), d.pointer().to_owned())).collect()
}

#[test]
fn a_cyrillic_look_alike_rule_is_named_not_just_unused() {
    let text = "{\"version\": \"1\", \"default\": \"allow\",\n  \"tools\": {\n    \"d\u{0435}lete_job\": {\"deny_if\": [{\"conditions\": []}]}\n  }\n}";
    let policy: Policy = text.parse().unwrap();
    let found = lint(&policy, &tools(&["delete_job", "list_jobs"]));
    let k: Vec<DiagnosticKind> = found.iter().map(|d| d.kind()).collect();
    assert_eq!(k, [DiagnosticKind::ConfusableCharacter, DiagnosticKind::ConfusableName]);
    for d in &found {
        assert_eq!(d.severity(), Severity::Warning);
        assert_eq!((d.line(), d.column()), (3, 19), "{d}");
        assert_eq!(d.pointer(), "/tools/d\u{0435}lete_job");
    }
    assert!(found[0].message().contains("U+0435"), "{}", found[0].message());
    assert!(
        found[1].message().contains("looks like the tool `delete_job`"),
        "{}",
        found[1].message()
    );
    // The real name: nothing to say.
    let ok: Policy =
        r#"{"version": "1", "default": "allow", "tools": {"delete_job": {}}}"#.parse().unwrap();
    assert!(lint(&ok, &tools(&["delete_job"])).is_empty());
}

#[test]
fn fullwidth_zero_width_and_bidi_in_hide_entries() {
    let policy: Policy = serde_json::json!({
        "version": "1", "default": "allow",
        "hide": ["\u{FF44}elete_job", "delete\u{200B}_job", "drop_\u{202E}elbat", "list_jobs"]
    })
    .to_string()
    .parse()
    .unwrap();
    let found = kinds(&policy, &tools(&["delete_job", "list_jobs", "drop_table"]));
    assert!(found.contains(&(DiagnosticKind::ConfusableCharacter, "/hide/0".into())), "{found:?}");
    assert!(found.contains(&(DiagnosticKind::ConfusableName, "/hide/0".into())), "{found:?}");
    assert!(found.contains(&(DiagnosticKind::InvisibleCharacter, "/hide/1".into())), "{found:?}");
    assert!(found.contains(&(DiagnosticKind::ConfusableName, "/hide/1".into())), "{found:?}");
    assert!(found.contains(&(DiagnosticKind::BidiControl, "/hide/2".into())), "{found:?}");
    assert!(!found.iter().any(|(_, p)| p == "/hide/3"), "{found:?}");
}

#[test]
fn unused_rules_hide_entries_and_unguarded_tools() {
    let text = r#"{"version": "1", "default": "allow", "hide": ["delete_jobs", "dbfs_*"],
  "tools": {"cancel_runs": {}, "list_*": {}, "list_jobs": {}}}"#;
    let policy: Policy = text.parse().unwrap();
    let list = vec![
        ToolInfo::new("cancel_run").with_risk("destructive (from its name)"),
        ToolInfo::new("list_jobs"),
        ToolInfo::new("dbfs_put").with_risk("destructive (from its name)"),
        ToolInfo::new("delete_job"),
    ];
    let found = lint(&policy, &list);
    let k: Vec<(DiagnosticKind, &str)> = found.iter().map(|d| (d.kind(), d.pointer())).collect();
    assert_eq!(
        k,
        [
            (DiagnosticKind::Unguarded, "/default"),
            (DiagnosticKind::UnusedHide, "/hide/0"),
            (DiagnosticKind::UnusedRule, "/tools/cancel_runs"),
            (DiagnosticKind::UnusedRule, "/tools/list_*"),
        ]
    );
    assert!(found[0].message().starts_with("tool `cancel_run` is destructive (from its name)"));
    assert!(found[1].message().ends_with("did you mean `delete_job`?"), "{}", found[1]);
    assert!(found[2].message().ends_with("did you mean `cancel_run`?"), "{}", found[2]);
    assert!(found[3].message().contains("a more specific rule governs"), "{}", found[3]);
    assert_eq!(DiagnosticKind::UnusedRule.as_str(), "unused_rule");
    assert_eq!(serde_json::to_value(DiagnosticKind::ConfusableName).unwrap(), "confusable_name");
}

#[test]
fn tool_info_reads_mcp_annotations() {
    let t = ToolInfo::from_mcp(&serde_json::json!({"name": "wipe",
        "annotations": {"destructiveHint": true}}))
    .unwrap();
    assert_eq!(t.risk(), Some("destructive (from its MCP annotations)"));
    assert!(ToolInfo::from_mcp(&serde_json::json!({"title": "x"})).is_none());
}

#[test]
fn large_policies_are_located_rule_by_rule() {
    let mut text = String::from("{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n");
    let mut list = Vec::new();
    for i in 0..3000 {
        let comma = if i == 2999 { "" } else { "," };
        text.push_str(&format!("  \"tool_{i:05}\": {{}}{comma}\n"));
        if i % 100 != 0 {
            list.push(ToolInfo::new(format!("tool_{i:05}")));
        }
    }
    text.push_str("}}\n");
    let policy: Policy = text.parse().unwrap();
    let found = lint(&policy, &list);
    assert_eq!(found.len(), 30);
    for (k, d) in found.iter().enumerate() {
        assert_eq!(d.pointer(), format!("/tools/tool_{:05}", k * 100));
        assert_eq!((d.line(), d.column()), (k * 100 + 2, 17));
    }
}
