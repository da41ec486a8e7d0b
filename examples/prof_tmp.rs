//! tmp
fn main() {
    let doc = r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {
        "limits": [{"counter": "sql", "window": "minute", "max": 9007199254740992, "scope": "grant"}]}}}"#;
    let e = mcp_policy::Evaluator::new(doc.parse().unwrap());
    let call = mcp_policy::ToolCall::new("execute_sql").with_grant("agent-1");
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..20_000_000 {
        if e.evaluate(std::hint::black_box(&call)).is_allowed() {
            n += 1;
        }
    }
    println!("{n} {:?}", t.elapsed() / 20_000_000);
}
