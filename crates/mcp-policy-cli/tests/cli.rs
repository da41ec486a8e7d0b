//! The built `mcp-policy` binary, command by command: output, formats and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::*;

use serde_json::{Value, json};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

// ------------------------------------------------------------------------------- validate

#[test]
fn validate_accepts_every_example_policy() {
    let policies = ["seed-policy.json", "databricks-policy.json", "spend-policy.json"].map(example);
    let mut args = vec!["validate"];
    args.extend(policies.iter().map(String::as_str));
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().filter(|l| l.contains(": valid (")).count(), 3, "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "text output is for people: standard error");
}

const BAD: &str = "{\"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\n    \"cancel_run\": { \"limts\": [] },\n    \"x\": {\"limits\": [{\"counter\": \"c\", \"window\": \"minute\", \"max\": 0}]}\n  }\n}\n";

#[test]
fn validate_reports_every_error_with_the_source_line_and_a_caret() {
    let dir = scratch("validate-text");
    let bad = write(&dir, "bad.json", BAD);
    let o = run(&["validate", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "diagnostics go to standard error: {}", stdout(&o));
    let out = stderr(&o);
    let expected = format!(
        "{bad}:4:21: error: unknown key `limts` in a rule; did you mean `limits`? (at /tools/cancel_run/limts)\n\
         4     \"cancel_run\": {{ \"limts\": [] }},\n{}^\n",
        " ".repeat(22)
    );
    assert!(out.starts_with(&expected), "{out}\n---\n{expected}");
    assert!(out.contains(&format!("{bad}:5:66: error: `max` must be a whole number from 1 to 2^53, found `0` (at /tools/x/limits/0/max)")), "{out}");
    assert!(stderr(&o).contains("2 errors, 0 warnings"));
}

#[test]
fn validate_json_is_an_array_of_findings() {
    let dir = scratch("validate-json");
    let bad = write(&dir, "bad.json", BAD);
    let o = run(&["validate", "--format", "json", &bad, &example("seed-policy.json")]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let findings = v.as_array().unwrap();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0]["file"], bad.as_str());
    assert_eq!(findings[0]["line"], 4);
    assert_eq!(findings[0]["column"], 21);
    assert_eq!(findings[0]["pointer"], "/tools/cancel_run/limts");
    assert_eq!(findings[0]["severity"], "error");
    assert_eq!(findings[0]["kind"], "unknown_key");
    // A valid policy alone gives an empty array and exit 0.
    let o = run(&["validate", "--format", "json", &example("seed-policy.json")]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap(), json!([]));
}

#[test]
fn validate_exit_2_on_unreadable_files_and_usage_errors() {
    let o = run(&["validate", "/nonexistent/policy.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read `/nonexistent/policy.json`"), "{}", stderr(&o));
    assert_eq!(run(&["validate"]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["validate", "--format", "xml", "x.json"]).status.code(), Some(2));
    let o = run(&["validate", &example("seed-policy.json"), "--tools", "/nonexistent/tools.json"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn validate_with_tools_warns_of_rules_and_hide_entries_matching_no_tool() {
    let dir = scratch("validate-tools");
    let policy = write(
        &dir,
        "p.json",
        r#"{
  "version": "1",
  "default": "deny",
  "hide": ["delete_jobs", "dbfs_*"],
  "tools": {
    "cancel_runs": {},
    "list_*": {},
    "list_jobs": {},
    "get_*": {}
  }
}"#,
    );
    let tools = example("databricks-tools.json");
    let o = run(&["validate", &policy, "--tools", &tools]);
    assert_eq!(o.status.code(), Some(0), "warnings alone pass");
    assert!(stdout(&o).is_empty());
    let out = stderr(&o);
    assert!(out.contains(&format!("{policy}:6:20: warning: rule `cancel_runs` matches no tool of the server; did you mean `cancel_run`? (at /tools/cancel_runs)")), "{out}");
    assert!(out.contains("warning: hide entry `delete_jobs` matches no tool of the server; did you mean `delete_job`? (at /hide/0)"), "{out}");
    assert!(!out.contains("`dbfs_*`"), "dbfs_* matches dbfs_put and dbfs_delete: {out}");
    assert!(!out.contains("`list_*`") && !out.contains("`get_*`"), "{out}");
    assert!(stderr(&o).contains("0 errors, 2 warnings"));
    let o = run(&["validate", &policy, "--tools", &tools, "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn validate_with_tools_warns_of_risky_tools_that_default_allow_leaves_unguarded() {
    let dir = scratch("validate-unguarded");
    let policy = write(
        &dir,
        "p.json",
        r#"{"version": "1", "default": "allow", "hide": ["dbfs_delete"],
        "tools": {"delete_job": {"approve_if": [{"conditions": []}]}}}"#,
    );
    let tools = write(
        &dir,
        "tools.json",
        r#"[{"name": "delete_job"}, {"name": "delete_workspace_object"},
        {"name": "dbfs_delete"}, {"name": "run_job"}, {"name": "list_jobs"},
        {"name": "wipe", "annotations": {"readOnlyHint": true}}]"#,
    );
    let o = run(&["validate", "--format", "json", &policy, "--tools", &tools]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let messages: Vec<&str> =
        v.as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap()).collect();
    // `wipe` says it is read-only, but its name destroys: a hint never makes a tool safe.
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].starts_with(
            "tool `delete_workspace_object` is destructive (from its name) and has no rule"
        ),
        "{messages:?}"
    );
    assert!(messages[1].starts_with("tool `run_job` is execute (from its name)"), "{messages:?}");
    assert!(messages[2].starts_with("tool `wipe` is destructive (from its name)"), "{messages:?}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|f| f["pointer"] == "/default" && f["severity"] == "warning")
    );
}

// ---------------------------------------------------------------------------------- check

fn calls_12_cancel_run() -> String {
    (0..12)
        .map(|i| json!({"tool": "cancel_run", "arguments": {"run_id": i}, "grant": "agent-7", "at": 1_767_225_600.0 + f64::from(i) * 2.5}).to_string() + "\n")
        .collect()
}

#[test]
fn check_replays_12_cancel_runs_as_10_allows_then_2_limits() {
    let dir = scratch("check-12");
    let calls = write(&dir, "calls.jsonl", &calls_12_cancel_run());
    let o = run(&["check", &example("seed-policy.json"), &calls]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12);
    for l in &lines[..10] {
        assert_eq!(l["decision"], "allow");
    }
    // Call 11 at 25 s into the minute, call 12 at 27.5 s: the window ends at 60 s.
    assert_eq!(
        lines[10],
        json!({"line": 11, "decision": "limit", "tool": "cancel_run", "rule": "/tools/cancel_run/limits/0",
        "message": "limit reached: counter `cancel_run_rate` admits 10 per minute per grant", "retry_after": 35.0})
    );
    assert_eq!(lines[11]["retry_after"], json!(32.5));
}

#[test]
fn check_reads_stdin_and_reports_malformed_lines_in_place() {
    let input = [
        r#"{"tool": "cancel_run", "at": "2026-01-01T00:00:00Z"}"#,
        "not json",
        r#"[1]"#,
        r#"{"arguments": {}}"#,
        r#"{"tool": 7}"#,
        r#"{"tool": "cancel_run", "arguments": [1]}"#,
        r#"{"tool": "cancel_run", "at": "yesterday"}"#,
        r#"{"tool": "cancel_run", "at": true}"#,
        r#"{"tool": "cancel_run", "grant": 5}"#,
        "",
        r#"{"tool": "list_jobs"}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &example("seed-policy.json")], &input);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10, "the blank line is skipped");
    assert_eq!(lines[0]["decision"], "allow");
    for (i, line_no) in (1..9).zip(2..) {
        assert_eq!(lines[i]["line"], line_no, "{}", lines[i]);
        assert!(lines[i]["error"].is_string());
    }
    assert!(lines[3]["error"].as_str().unwrap().contains("`tool` is missing"));
    assert!(lines[5]["error"].as_str().unwrap().contains("`arguments` must be an object"));
    assert_eq!(lines[9]["decision"], "deny");
    assert!(stderr(&o).contains("8 malformed lines"));
}

#[test]
fn check_clock_never_goes_back_and_lines_without_at_keep_the_time() {
    let dir = scratch("check-clock");
    let policy = write(
        &dir,
        "p.json",
        r#"{"version": "1", "default": "deny", "tools": {"t": {"limits": [{"counter": "c", "window": "minute", "max": 1}]}}}"#,
    );
    let input = [
        r#"{"tool": "t", "at": 1767225659}"#,
        r#"{"tool": "t", "at": 1767225600}"#, // earlier: counts as 59 s, same window
        r#"{"tool": "t"}"#,                   // no `at`: still 59 s
        r#"{"tool": "t", "at": "2026-01-01T00:01:00Z"}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &policy], &input);
    let kinds: Vec<String> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["allow", "limit", "limit", "allow"]);
}

#[test]
fn check_replays_approved_calls() {
    let input = [
        r#"{"tool": "execute_sql", "arguments": {"statement": "DELETE FROM t"}, "grant": "g", "at": 1767225600}"#,
        r#"{"tool": "execute_sql", "arguments": {"statement": "DELETE FROM t"}, "grant": "g", "approved": true}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &example("databricks-policy.json")], &input);
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["decision"], "approve");
    assert!(lines[0]["approval_key"].is_string());
    assert_eq!(lines[1]["decision"], "allow");
}

#[test]
fn check_refuses_an_invalid_policy_with_exit_2() {
    let dir = scratch("check-bad");
    let bad = write(&dir, "bad.json", BAD);
    let o = run_stdin(&["check", &bad], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a valid policy"), "{}", stderr(&o));
}

// ----------------------------------------------------------------------------------- test

#[test]
fn test_runs_the_example_cases() {
    let o = run(&["test", &example("seed-policy.json"), &example("seed-policy.cases.json")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().last(), Some("3 passed, 0 failed"));
}

#[test]
fn test_reports_what_was_expected_and_what_was_decided() {
    let dir = scratch("test-fail");
    let cases = write(
        &dir,
        "cases.json",
        r#"[
      {"name": "passes", "calls": [{"tool": "cancel_run", "expect": "allow"}]},
      {"name": "wrong kind", "calls": [{"tool": "cancel_run", "repeat": 11, "expect": "allow"}]},
      {"name": "wrong rule", "calls": [{"tool": "nope", "expect": "deny", "rule": "/hide/0"}]},
      {"name": "wrong retry", "calls": [{"tool": "cancel_run", "repeat": 10, "expect": "allow", "at": 0},
                                          {"tool": "cancel_run", "expect": "limit", "retry_after": 1}]}
    ]"#,
    );
    let o = run(&["test", &example("seed-policy.json"), &cases]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("FAIL wrong kind\n     call 11 (`cancel_run`): expected allow, got limit by `/tools/cancel_run/limits/0`"), "{out}");
    assert!(
        out.contains(
            "FAIL wrong rule\n     call 1 (`nope`): expected rule `/hide/0`, got deny by `/default`"
        ),
        "{out}"
    );
    assert!(out.contains("expected retry_after 1, got Some(60.0)"), "{out}");
    assert_eq!(out.lines().last(), Some("1 passed, 3 failed"));
}

#[test]
fn test_rejects_a_malformed_cases_file() {
    let dir = scratch("test-bad");
    let cases = write(
        &dir,
        "cases.json",
        r#"[{"name": "x", "calls": [{"tool": "t", "expekt": "allow"}]}]"#,
    );
    let o = run(&["test", &example("seed-policy.json"), &cases]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown field `expekt`"), "{}", stderr(&o));
}

// --------------------------------------------------------------------------------- schema

#[test]
fn schema_prints_the_published_schema() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let published = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.schema.json"),
    )
    .unwrap();
    assert_eq!(stdout(&o), published);
}

// ----------------------------------------------------------------------------------- init

fn init_databricks(extra: &[&str]) -> Value {
    let tools = example("databricks-tools.json");
    let mut args = vec!["init", "--tools", tools.as_str()];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn init_on_the_databricks_tools_gives_the_expected_starter_policy() {
    let p = init_databricks(&[]);
    assert_eq!(p["default"], "deny");
    assert_eq!(
        p["tools"]["cancel_run"]["limits"],
        json!([{"counter": "cancel_run_rate", "window": "minute", "max": 10, "scope": "grant"}])
    );
    let hide: Vec<&str> =
        p["hide"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for t in ["delete_job", "delete_workspace_object", "dbfs_delete"] {
        assert!(hide.contains(&t), "{t} hidden: {hide:?}");
    }
    let tools = p["tools"].as_object().unwrap();
    assert_eq!(tools.len(), 38);
    for (name, rule) in tools {
        let description = rule["description"].as_str().unwrap();
        assert!(
            ["read", "write", "execute", "destructive", "financial"]
                .iter()
                .any(|c| description.starts_with(c)),
            "{name}: {description}"
        );
        if name.starts_with("list_") || name.starts_with("get_") {
            assert!(description.starts_with("read"), "{name}: {description}");
            assert_eq!(
                rule.as_object().unwrap().len(),
                1,
                "{name}: a read tool is only allowed: {rule}"
            );
        }
    }
    assert_eq!(p["tools"]["create_cluster"]["limits"][0]["max"], 30);
}

#[test]
fn init_output_passes_validate_with_tools_without_a_warning() {
    let dir = scratch("init-validate");
    let out = dir.join("policy.json").to_string_lossy().into_owned();
    let tools = example("databricks-tools.json");
    let o = run(&["init", "--tools", &tools, "--out", &out]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).is_empty());
    let o = run(&["validate", &out, "--tools", &tools, "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // And under the policy, the hidden tools are denied and the read tools allowed.
    let input = [
        r#"{"tool": "delete_job"}"#,
        r#"{"tool": "list_jobs"}"#,
        r#"{"tool": "execute_sql", "arguments": {"statement": "select 1"}}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &out], &input);
    let kinds: Vec<String> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["deny", "allow", "allow"]);
}

#[test]
fn init_with_approve_destructive_asks_a_human_instead_of_hiding() {
    let p = init_databricks(&["--approve-destructive"]);
    assert!(p.get("hide").is_none(), "{}", p["hide"]);
    assert_eq!(p["tools"]["delete_job"]["approve_if"][0]["conditions"], json!([]));
}

#[test]
fn init_reads_annotations_and_bare_arrays() {
    let dir = scratch("init-annotations");
    let tools = write(
        &dir,
        "tools.json",
        r#"[
      {"name": "purge_cache", "annotations": {"readOnlyHint": true}},
      {"name": "read_file", "annotations": {"readOnlyHint": false, "destructiveHint": true}},
      {"name": "send_payment", "description": "Send money"},
      {"name": "frobnicate"}
    ]"#,
    );
    let o = run(&["init", "--tools", &tools]);
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // A read-only hint does not make a purge safe (issue 10): the name decides, and says so.
    assert!(
        p["tools"]["purge_cache"]["description"]
            .as_str()
            .unwrap()
            .starts_with("destructive (from its name)"),
        "{}",
        p["tools"]["purge_cache"]
    );
    assert!(
        p["tools"]["read_file"]["description"]
            .as_str()
            .unwrap()
            .starts_with("destructive (from its MCP annotations)")
    );
    assert_eq!(p["hide"], json!(["purge_cache", "read_file"]));
    assert!(p["tools"]["send_payment"]["description"].as_str().unwrap().starts_with("financial"));
    assert_eq!(
        p["tools"]["send_payment"]["approve_if"][0]["reason"],
        "financial: a human approves every call"
    );
    assert!(
        p["tools"]["frobnicate"]["description"]
            .as_str()
            .unwrap()
            .starts_with("write (unrecognised")
    );
}

#[test]
fn init_refuses_what_is_not_a_tool_list() {
    let dir = scratch("init-bad");
    let tools = write(&dir, "tools.json", r#"{"tool": []}"#);
    let o = run(&["init", "--tools", &tools]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a tool list"), "{}", stderr(&o));
}

// ------------------------------------------------------------ times out of range (issue 10)

const ONE_A_MINUTE: &str = r#"{"version": "1", "default": "deny", "tools": {"t": {"limits": [{"counter": "c", "window": "minute", "max": 1}]}}}"#;

#[test]
fn check_refuses_times_out_of_range_with_their_line_instead_of_saturating() {
    let dir = scratch("check-at-range");
    let policy = write(&dir, "p.json", ONE_A_MINUTE);
    let input = [
        r#"{"tool": "t", "at": 1767225600}"#,
        r#"{"tool": "t", "at": 1e300}"#,
        r#"{"tool": "t", "at": -1}"#,
        r#"{"tool": "t", "at": "2600-01-01T00:00:00Z"}"#,
        r#"{"tool": "t", "at": 16756761600}"#,
        r#"{"tool": "t", "at": "1969-12-31T23:59:59Z"}"#,
        r#"{"tool": "t", "at": 1767225601}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &policy], &input);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["decision"], "allow");
    for (i, line) in lines.iter().enumerate().take(6).skip(1) {
        assert_eq!(line["line"], i + 1, "{line}");
        let e = line["error"].as_str().unwrap();
        assert!(e.contains("the end of the year 2500"), "{e}");
    }
    assert!(lines[1]["error"].as_str().unwrap().contains("found `1e"), "{}", lines[1]);
    // None of the refused times moved the clock: the next second is still in the first
    // minute, and the limit of 1 a minute holds.
    assert_eq!(lines[6]["decision"], "limit", "{}", lines[6]);
    assert_eq!(lines[6]["line"], 7);
}

#[test]
fn test_refuses_a_time_out_of_range_with_its_line() {
    let dir = scratch("test-at-range");
    let policy = write(&dir, "p.json", ONE_A_MINUTE);
    let cases = write(
        &dir,
        "cases.json",
        "{\"cases\": [\n  {\"name\": \"far future\", \"calls\": [\n    {\"tool\": \"t\", \"at\": 1e300, \"expect\": \"allow\"}\n  ]}\n]}\n",
    );
    let o = run(&["test", &policy, &cases]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("found `1e") && e.contains("the end of the year 2500"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    let cases = write(
        &dir,
        "neg.json",
        "[{\"name\": \"x\", \"calls\": [\n{\"tool\": \"t\", \"at\": \"0001-01-01T00:00:00Z\", \"expect\": \"allow\"}]}]",
    );
    let o = run(&["test", &policy, &cases]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
}

// ------------------------------------------------------------------ check edges (issue 13)

#[test]
fn check_rejects_unknown_fields_with_their_line() {
    let dir = scratch("check-unknown");
    let policy = write(&dir, "p.json", ONE_A_MINUTE);
    let input = [
        r#"{"tool": "t", "grant": "a", "at": 1767225600}"#,
        r#"{"tool": "t", "grnat": "b"}"#,
        r#"{"tool": "t", "frobnicate": 1}"#,
    ]
    .join("\n");
    let o = run_stdin(&["check", &policy], &input);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["line"], 1);
    // The typo is not replayed as the anonymous grant (which would have been allowed).
    assert_eq!(
        lines[1],
        json!({"line": 2, "error": "unknown field `grnat`; did you mean `grant`?"})
    );
    assert_eq!(lines[2]["line"], 3);
    let e = lines[2]["error"].as_str().unwrap();
    assert!(e.starts_with("unknown field `frobnicate`; a call has `tool`, `arguments`"), "{e}");
}

#[test]
fn check_names_the_input_line_of_every_decision() {
    // Blank lines and errors in between: each output line still names its own input line.
    let input = "\n{\"tool\": \"list_jobs\"}\n\nnot json\n{\"tool\": \"cancel_run\"}\n";
    let o = run_stdin(&["check", &example("seed-policy.json")], input);
    let numbers: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["line"].clone())
        .collect();
    assert_eq!(numbers, [json!(2), json!(4), json!(5)]);
}

#[test]
fn check_summary_counts_decisions_per_tool_and_per_rule() {
    let dir = scratch("check-summary");
    let mut calls = calls_12_cancel_run();
    calls.push_str("{\"tool\": \"nope\"}\n{\"tool\": \"nope\", \"grnat\": 1}\n");
    let calls = write(&dir, "calls.jsonl", &calls);
    let o = run(&["check", "--summary", &example("seed-policy.json"), &calls]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count(), 14, "the summary is not in the machine output");
    let e = stderr(&o);
    let expected = "summary: 13 calls: 10 allow, 1 deny, 2 limit; 1 malformed line\n\
                    by tool:\n\
                    \x20 cancel_run  10 allow, 2 limit\n\
                    \x20 nope        1 deny\n\
                    by rule:\n\
                    \x20 /default                    1 deny\n\
                    \x20 /tools/cancel_run           10 allow\n\
                    \x20 /tools/cancel_run/limits/0  2 limit\n";
    assert!(e.contains(expected), "{e}\n---\n{expected}");
    // Without --summary, no summary.
    let o = run(&["check", &example("seed-policy.json"), &calls]);
    assert!(!stderr(&o).contains("summary"), "{}", stderr(&o));
}

// ------------------------------------------------------------------- test edges (issue 13)

#[test]
fn test_names_a_misspelt_field_and_its_line_in_the_wrapped_form_too() {
    let dir = scratch("test-wrapped-typo");
    let wrapped = write(
        &dir,
        "wrapped.json",
        "{\"cases\": [\n  {\"name\": \"x\", \"calls\": [\n    {\"tool\": \"t\", \"expct\": \"allow\"}\n  ]}\n]}\n",
    );
    let bare = write(
        &dir,
        "bare.json",
        "[\n  {\"name\": \"x\", \"calls\": [\n    {\"tool\": \"t\", \"expct\": \"allow\"}\n  ]}\n]\n",
    );
    for cases in [&wrapped, &bare] {
        let o = run(&["test", &example("seed-policy.json"), cases]);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains("unknown field `expct`"), "{cases}: {e}");
        assert!(e.contains("line 3"), "{cases}: {e}");
        assert!(!e.contains("expected a sequence"), "{e}");
    }
    // A misspelt wrapper key is named as well.
    let typo = write(&dir, "caes.json", "{\n\"caes\": []}");
    let o = run(&["test", &example("seed-policy.json"), &typo]);
    assert!(stderr(&o).contains("unknown field `caes`"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- init edges (issues 10, 13)

#[test]
fn init_trusts_no_annotation_over_a_dangerous_name() {
    let dir = scratch("init-hint");
    let tools = write(
        &dir,
        "tools.json",
        r#"{"tools": [
      {"name": "delete_database", "annotations": {"readOnlyHint": true}},
      {"name": "list_tables", "annotations": {"readOnlyHint": true}},
      {"name": "get_report", "description": "Fetch a report"}
    ]}"#,
    );
    let o = run(&["init", "--tools", &tools]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rule = &p["tools"]["delete_database"];
    assert!(
        rule["description"].as_str().unwrap().starts_with("destructive (from its name)"),
        "{rule}"
    );
    assert_eq!(p["hide"], json!(["delete_database"]));
    assert!(rule["approve_if"].is_array(), "{rule}");
    // The basis is the source that gave the class.
    assert!(
        p["tools"]["list_tables"]["description"]
            .as_str()
            .unwrap()
            .starts_with("read (from its MCP annotations)")
    );
    assert!(
        p["tools"]["get_report"]["description"]
            .as_str()
            .unwrap()
            .starts_with("read (from its name)")
    );
    // And the policy denies it.
    let dir_policy = write(&dir, "p.json", &stdout(&o));
    let o = run_stdin(&["check", &dir_policy], r#"{"tool": "delete_database"}"#);
    assert!(stdout(&o).contains("\"decision\":\"deny\""), "{}", stdout(&o));
}

#[test]
fn init_writes_the_schema_of_the_policy() {
    let p = init_databricks(&[]);
    let schema: Value = serde_json::from_slice(&run(&["schema"]).stdout).unwrap();
    assert_eq!(p["$schema"], schema["$id"]);
    assert!(p["$schema"].as_str().unwrap().starts_with("https://"), "{}", p["$schema"]);
}

// ------------------------------------------------------------- validate edges (issue 13)

#[test]
fn validate_prints_a_regex_error_with_its_lines_and_one_caret() {
    let dir = scratch("validate-regex");
    let policy = write(
        &dir,
        "p.json",
        "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"t\": {\"deny_if\": [{\"conditions\": [\n  {\"path\": \"args.q\", \"op\": \"regex\", \"value\": \"(a\"}\n]}]}}}\n",
    );
    let o = run(&["validate", &policy]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(stdout(&o).is_empty());
    // However the loader words it, the heading carries the location and the source line comes
    // with exactly one caret of ours after it.
    let heading = e.lines().next().unwrap();
    assert!(heading.starts_with(&format!("{policy}:2:")), "{e}");
    assert!(heading.contains("invalid regex"), "{e}");
    let source = e.lines().position(|l| l.starts_with("2   {\"path\"")).expect(&e);
    assert_eq!(e.lines().nth(source + 1).unwrap().trim(), "^", "{e}");
}

#[test]
fn validate_keeps_the_lines_of_a_regex_error() {
    let dir = scratch("validate-regex-lines");
    let policy = write(
        &dir,
        "p.json",
        "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"t\": {\"deny_if\": [{\"conditions\": [\n  {\"path\": \"args.q\", \"op\": \"regex\", \"value\": \"(a\"}\n]}]}}}\n",
    );
    let o = run(&["validate", "--format", "json", &policy]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let message = v[0]["message"].as_str().unwrap();
    // The regex crate's own layout: the pattern, its caret, the reason, on their own lines.
    assert!(message.contains("\n    (a\n    ^\n"), "{message:?}");
    assert!(message.contains("unclosed group"), "{message:?}");
    let o = run(&["validate", &policy]);
    assert!(stderr(&o).contains(" |     ^\n"), "{}", stderr(&o));
}

#[test]
fn validate_says_a_window_is_whole_seconds() {
    let dir = scratch("validate-window");
    let policy = write(
        &dir,
        "p.json",
        r#"{"version": "1", "default": "deny", "tools": {"t": {"limits": [{"counter": "c", "window": "1m", "max": 1}]}}}"#,
    );
    let o = run(&["validate", "--format", "json", &policy]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let message = v[0]["message"].as_str().unwrap();
    assert!(message.contains("whole seconds"), "{message}");
    assert!(message.contains("`1m`"), "{message}");
    assert!(message.contains("60"), "suggests 60 for 1m: {message}");
}

#[test]
fn validate_suggests_args_for_a_bare_increment_from() {
    let dir = scratch("validate-increment-from");
    let policy = write(
        &dir,
        "p.json",
        r#"{"version": "1", "default": "deny", "tools": {"t": {"limits": [{"counter": "c", "window": "day", "max": 100, "increment_from": "amount"}]}}}"#,
    );
    let o = run(&["validate", "--format", "json", &policy]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let message = v[0]["message"].as_str().unwrap();
    assert!(message.contains("did you mean `args.amount`?"), "{message}");
}

#[test]
fn validate_names_the_keyword_and_value_of_a_bad_argument_schema() {
    let dir = scratch("validate-schema-type");
    let policy = write(
        &dir,
        "p.json",
        r#"{"version": "1", "default": "deny", "tools": {"t": {"arguments": {"type": "object", "properties": {"n": {"type": "numbr"}}}}}}"#,
    );
    let o = run(&["validate", "--format", "json", &policy]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let message = v[0]["message"].as_str().unwrap();
    assert!(!message.contains("anyOf"), "{message}");
    assert!(message.contains("`type`") && message.contains("`numbr`"), "{message}");
    assert!(message.contains("did you mean `number`?"), "{message}");
    assert_eq!(v[0]["pointer"], "/tools/t/arguments/properties/n/type");
}

#[test]
fn validate_with_tools_locates_warnings_in_a_large_policy() {
    // 2,000 rules, of which every 100th names no tool: each warning on its own rule's line.
    let dir = scratch("validate-large");
    let mut policy = String::from("{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n");
    let mut tools = Vec::new();
    for i in 0..2000 {
        let comma = if i == 1999 { "" } else { "," };
        policy.push_str(&format!("  \"tool_{i:05}\": {{}}{comma}\n"));
        if i % 100 != 0 {
            tools.push(json!({"name": format!("tool_{i:05}")}));
        }
    }
    policy.push_str("}}\n");
    let policy = write(&dir, "p.json", &policy);
    let tools = write(&dir, "tools.json", &json!({ "tools": tools }).to_string());
    let o = run(&["validate", "--format", "json", &policy, "--tools", &tools]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let findings = v.as_array().unwrap();
    assert_eq!(findings.len(), 20);
    for (k, f) in findings.iter().enumerate() {
        let i = k * 100;
        assert_eq!(f["pointer"], format!("/tools/tool_{i:05}"));
        assert_eq!(f["line"], i + 2, "{f}");
        assert_eq!(f["column"], 17, "{f}");
    }
}
