//! A reader that goes away early (`mcp-policy ... | head -1`) ends the command quietly: no
//! panic, no exit status 101 (issue 11).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-policy-pipe-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn seed_policy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed-policy.json")
        .to_string_lossy()
        .into_owned()
}

/// Runs `mcp-policy ARGS`, reads one line of `stream` ("stdout" or "stderr"), closes the read
/// end, and returns the exit status and everything on the other stream.
fn close_early(args: &[&str], stream: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-policy"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (closed, mut other): (Box<dyn Read + Send>, Box<dyn Read + Send>) = if stream == "stdout" {
        (Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap()))
    } else {
        (Box::new(child.stderr.take().unwrap()), Box::new(child.stdout.take().unwrap()))
    };
    // Drain the other stream in a thread so the child never blocks on it.
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        other.read_to_string(&mut s).unwrap();
        s
    });
    let mut reader = BufReader::new(closed);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "the command wrote something first");
    drop(reader);
    let status = child.wait().unwrap();
    (status, drain.join().unwrap())
}

#[test]
fn check_exits_quietly_when_its_reader_goes_away() {
    let dir = scratch("check");
    // 100,000 decisions: megabytes, far beyond any pipe buffer.
    let mut calls = String::new();
    for i in 0..100_000 {
        calls.push_str(&json!({"tool": "list_jobs", "grant": format!("g{i}")}).to_string());
        calls.push('\n');
    }
    let path = dir.join("calls.jsonl");
    std::fs::write(&path, calls).unwrap();
    let (status, stderr) =
        close_early(&["check", &seed_policy(), path.to_str().unwrap()], "stdout");
    assert_ne!(status.code(), Some(101), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "a closed pipe is not an error: {stderr}");
}

/// A policy of 5,000 rules none of whose tools the server has: 5,000 warnings.
fn many_warnings(dir: &Path) -> (String, String) {
    let tools: serde_json::Map<String, serde_json::Value> =
        (0..5000).map(|i| (format!("tool_{i}"), json!({}))).collect();
    let policy = json!({"version": "1", "default": "deny", "tools": tools});
    let p = dir.join("p.json");
    std::fs::write(&p, serde_json::to_string_pretty(&policy).unwrap()).unwrap();
    let t = dir.join("tools.json");
    std::fs::write(&t, r#"{"tools": [{"name": "something_else"}]}"#).unwrap();
    (p.to_string_lossy().into_owned(), t.to_string_lossy().into_owned())
}

#[test]
fn validate_json_exits_quietly_when_its_reader_goes_away() {
    let dir = scratch("validate-json");
    let (policy, tools) = many_warnings(&dir);
    let (status, stderr) =
        close_early(&["validate", "--format", "json", &policy, "--tools", &tools], "stdout");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn validate_text_exits_quietly_when_standard_error_goes_away() {
    let dir = scratch("validate-text");
    let (policy, tools) = many_warnings(&dir);
    let (status, stdout) = close_early(&["validate", &policy, "--tools", &tools], "stderr");
    assert_ne!(status.code(), Some(101), "{stdout}");
    assert_eq!(status.code(), Some(0), "{stdout}");
}
