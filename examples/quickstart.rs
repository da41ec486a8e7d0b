//! The main job of mcp-policy in one screen: a runaway agent, an unknown tool, and a call that
//! needs a human.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::Arc;
use std::time::Duration;

use mcp_policy::{DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The seed policy: `cancel_run` at most 10 times a minute per grant; everything else denied.
    let policy =
        Policy::from_path(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed-policy.json"))?;
    println!("policy {} loaded\n", policy.digest().get(..12).unwrap_or_default());

    // A manual clock keeps the output the same on every run: 2026-01-01T00:00:05Z.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_605.0)));
    let evaluator = Evaluator::new(policy).with_clock(clock.clone());

    println!("1. A runaway agent calls `cancel_run` 12 times in one minute:");
    for i in 1..=12 {
        let args = json!({ "run_id": 1000 + i });
        let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-7");
        let decision = evaluator.evaluate(&call);
        match decision.kind() {
            DecisionKind::Allow => println!("   call {i:>2}: allow"),
            _ => println!("   call {i:>2}: {}", serde_json::to_string(&decision)?),
        }
        clock.advance(Duration::from_secs(1));
    }

    println!("\n2. The agent tries a tool the policy does not name:");
    let args = json!({ "job_id": 42 });
    let call = ToolCall::new("delete_job").with_arguments(&args).with_grant("agent-7");
    let decision = evaluator.evaluate(&call);
    println!("   {}", serde_json::to_string(&decision)?);
    println!("   the model sees: {}", decision.client_text().unwrap_or_default());

    println!("\n3. An approval round trip, under the Databricks example policy:");
    evaluator.reload(Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/databricks-policy.json"
    ))?);
    let args = json!({ "statement": "DELETE FROM sales.orders WHERE status = 'test'" });
    let call = ToolCall::new("execute_sql")
        .with_arguments(&args)
        .with_grant("agent-7")
        .with_session("s-1");
    let decision = evaluator.evaluate(&call);
    println!("   first try: {} ({})", decision.kind(), decision.message());
    let key = decision.approval_key().unwrap_or_default().to_owned();
    println!("   a human approves key {}...", key.get(..16).unwrap_or_default());
    let approved = call.with_approval_key(&key);
    println!("   with the key: {}", evaluator.evaluate(&approved).kind());
    println!("   the same key again: {}", evaluator.evaluate(&approved).kind());
    Ok(())
}
