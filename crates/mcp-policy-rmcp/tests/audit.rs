//! Every decision is one structured `tracing` event, with the arguments' keys but not their
//! values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, ProtocolVersion};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_decision_is_one_audit_event_without_argument_values() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    // A current-thread runtime: the server's tasks run on this thread, under this subscriber.
    let _default = tracing::subscriber::set_default(subscriber);

    let c = support::connect(Some(true), ProtocolVersion::V_2025_11_25).await;
    let digest = c.server.guard.as_ref().unwrap().evaluator().policy().digest().to_owned();
    let mut p = CallToolRequestParams::new("execute_sql");
    p.arguments = serde_json::json!({"statement": "DROP TABLE secret_users", "warehouse": "wh-42"})
        .as_object()
        .cloned();
    c.client.call_tool(p).await.unwrap();
    let mut p = CallToolRequestParams::new("list_clusters");
    p.arguments = serde_json::json!({"limit": 31337}).as_object().cloned();
    c.client.call_tool(p).await.unwrap();

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let events: Vec<&str> = log.lines().filter(|l| l.contains("mcp_policy::audit")).collect();
    assert_eq!(events.len(), 2, "{log}");
    let deny = events[0];
    assert!(deny.contains("WARN"), "{deny}");
    for part in [
        "tool=\"execute_sql\"",
        "grant=\"agent-7\"",
        "decision=\"deny\"",
        "rule=/tools/execute_sql/deny_if/0",
        "DROP is not allowed",
        &format!("policy=\"{digest}\""),
        "argument_keys=[\"statement\", \"warehouse\"]",
    ] {
        assert!(deny.contains(part), "{part} in {deny}");
    }
    assert!(
        events[1].contains("INFO") && events[1].contains("decision=\"allow\""),
        "{}",
        events[1]
    );
    for secret in ["secret_users", "wh-42", "31337"] {
        assert!(
            !log.contains(secret),
            "argument value `{secret}` leaked into the audit log: {log}"
        );
    }
}
