//! `mcp-policy explain`, run as the built binary: the human form, `--json`, exit codes, and no
//! argument value in the output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use support::*;

use serde_json::Value;

const SQL: &str = r#"{"tool": "execute_sql", "arguments": {"statement": "DELETE FROM t WHERE k = 'SECRET-91c2'"}, "grant": "g", "session": "s", "at": "2026-01-01T00:00:00Z"}"#;

#[test]
fn explain_prints_each_step_for_a_person() {
    let dir = scratch("human");
    let call = dir.join("call.json");
    std::fs::write(&call, SQL).unwrap();
    let o = bin()
        .args(["explain", &example("databricks-policy.json"), call.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("approve `execute_sql` by /tools/execute_sql/approve_if/0: "),
        "{text}"
    );
    assert!(text.contains(" 6. approve_if  decided (/tools/execute_sql/approve_if/0)\n"), "{text}");
    assert!(text.contains("args.statement regex: true (read string)"), "{text}");
    assert!(text.contains("counter `sql` per session"), "{text}");
    assert!(!text.contains("SECRET"), "a value of the call is printed: {text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_json_from_standard_input_and_approved_calls() {
    let o = run_stdin(&["explain", "--json", &example("databricks-policy.json")], SQL);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "approve");
    assert_eq!(v["decided_by"], "approve_if");
    assert_eq!(v["steps"].as_array().unwrap().len(), 9);
    assert!(!stdout(&o).contains("SECRET"));
    assert!(v.get("approval_key").is_none(), "no key is printed");

    // `approved`: explained as a human approved it, as `check` replays it.
    let approved = SQL.replace("\"grant\"", "\"approved\": true, \"grant\"");
    let o = run_stdin(&["explain", "--json", &example("databricks-policy.json")], &approved);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["steps"][6]["outcome"], "passed");
    let counters = v["steps"][7]["counters"].as_array().unwrap();
    assert!(counters.iter().all(|c| c["count"] == 0 && c["would"] == "admit"), "{v}");
}

#[test]
fn explain_exit_codes() {
    let policy = example("databricks-policy.json");
    // A malformed call: 1, with the field named.
    let o = run_stdin(&["explain", &policy], r#"{"tool": "execute_sql", "grnat": "g"}"#);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown field `grnat`; did you mean `grant`?"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let o = run_stdin(&["explain", &policy], "[1]");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("a call is a JSON object, found an array"), "{}", stderr(&o));
    let o = run_stdin(&["explain", &policy], "{");
    assert_eq!(o.status.code(), Some(1));
    // A missing call file or policy: 2.
    let o = bin().args(["explain", &policy, "/nonexistent/call.json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read `/nonexistent/call.json`"), "{}", stderr(&o));
    let o = run_stdin(&["explain", "/nonexistent/policy.json"], SQL);
    assert_eq!(o.status.code(), Some(2));
    // A denied call is explained: 0.
    let o = run_stdin(&["explain", &policy], r#"{"tool": "drop_everything"}"#);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("deny `drop_everything` by /default: "), "{}", stdout(&o));
}
