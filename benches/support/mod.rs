//! Policies shared by the benchmarks (each bench uses some of them).
#![allow(dead_code, unreachable_pub, clippy::indexing_slicing)]

use serde_json::{Value, json};

/// A generated policy of about `target_bytes`: thousands of exact tools with conditions of every
/// kind and a limit each; every fifth tool has an arguments schema and every `regex_every`-th a
/// regex of its own (1: every tool); plus 100 patterns.
pub fn big_policy(target_bytes: usize, regex_every: usize) -> String {
    let mut tools = serde_json::Map::new();
    for p in 0..100 {
        tools.insert(format!("pattern_{p:03}_*"), json!({}));
    }
    let mut i = 0;
    loop {
        let name = format!("tool_{i:05}");
        let mut deny = vec![
            json!({"path": "args.n", "op": "gt", "value": i}),
            json!({"path": "args.to", "op": "starts_with", "value": format!("EXT-{i}")}),
        ];
        if i % regex_every == 0 {
            deny.push(json!({"path": "args.s", "op": "regex", "value": format!("(?i)\\b(drop|truncate|t{i})\\b")}));
        }
        let mut rule = json!({
            "require": [{"conditions": [{"path": "context.env", "op": "in", "value": ["prod", "staging"]}]}],
            "deny_if": [{"conditions": deny, "on_deny": "no"}],
            "approve_if": [{"conditions": [{"path": "args.path", "op": "within", "value": ["/srv/a", "/srv/b"]}]}],
            "limits": [{"counter": format!("c{i}"), "window": "minute", "max": 100, "scope": "grant"}]
        });
        if i % 5 == 0 {
            rule["arguments"] = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        }
        tools.insert(name, rule);
        i += 1;
        if i % 100 == 0 {
            let doc = document(&tools);
            if doc.len() >= target_bytes {
                return doc;
            }
        }
    }
}

fn document(tools: &serde_json::Map<String, Value>) -> String {
    serde_json::to_string_pretty(&json!({
        "version": "1",
        "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 1000}]},
        "tools": tools
    }))
    .unwrap_or_default()
}

/// A policy with `exact` exact tools (`tool_00000`, ...) with no rule content and 100 patterns
/// (`pattern_000_*`, ...).
pub fn many_tools(exact: usize) -> String {
    let mut tools = serde_json::Map::new();
    for p in 0..100 {
        tools.insert(format!("pattern_{p:03}_*"), json!({}));
    }
    for i in 0..exact {
        tools.insert(format!("tool_{i:05}"), json!({}));
    }
    json!({"version": "1", "default": "deny", "tools": tools}).to_string()
}
