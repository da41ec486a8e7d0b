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

/// Captures this thread's `tracing` output (the test runtime runs the server on this thread).
fn capture() -> (Buffer, tracing::subscriber::DefaultGuard) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

fn audit_lines(buffer: &Buffer) -> Vec<String> {
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    log.lines().filter(|l| l.contains("mcp_policy::audit")).map(str::to_owned).collect()
}

/// Runs one deny path: `run` makes the calls (arguments carrying `sentinel`) and returns the
/// refusal the client saw, if it saw one. Asserts that the path logged at least one `WARN` audit
/// event and that neither the events nor the refusal carry the sentinel.
async fn deny_path<F, Fut>(buffer: &Buffer, label: &str, sentinel: &str, run: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<rmcp::model::CallToolResult>>,
{
    let before = audit_lines(buffer).len();
    let refusal = run().await;
    let lines = audit_lines(buffer);
    let new = &lines[before..];
    assert!(new.iter().any(|l| l.contains("WARN")), "{label}: no WARN audit event in {new:?}");
    for line in new {
        assert!(!line.contains(sentinel), "{label}: argument value in an audit event: {line}");
    }
    if let Some(r) = refusal {
        assert_eq!(r.is_error, Some(true), "{label}");
        let wire = serde_json::to_string(&r).unwrap();
        assert!(!wire.contains(sentinel), "{label}: argument value in the refusal: {wire}");
    }
}

fn args(value: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    value.as_object().cloned()
}

fn call(tool: &'static str, value: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool);
    p.arguments = args(value);
    p
}

#[tokio::test]
async fn no_deny_path_puts_an_argument_value_in_an_audit_event() {
    use mcp_policy_rmcp::APPROVAL_INPUT;
    use rmcp::model::{CallToolRequest, CallToolResponse, ClientRequest};
    use rmcp::service::PeerRequestOptions;
    use serde_json::json;
    use support::{Gate, Human, POLICY, connect, connect_human};

    let (buffer, _default) = capture();
    let legacy = || ProtocolVersion::V_2025_11_25;
    let c = connect(None, legacy()).await;
    let once = |p: CallToolRequestParams| {
        let client = &c.client;
        async move {
            match client.call_tool_once(p).await.unwrap() {
                CallToolResponse::Complete(r) => Some(r),
                other => panic!("{other:?}"),
            }
        }
    };

    let s = "SENTINEL-deny-if-5a1f";
    deny_path(&buffer, "deny_if", s, || {
        once(call("execute_sql", json!({"statement": format!("DROP TABLE {s}")})))
    })
    .await;
    let s = "SENTINEL-require-77c2";
    deny_path(&buffer, "require", s, || {
        once(call("read_path", json!({"path": format!("/etc/{s}")})))
    })
    .await;
    let s = "SENTINEL-default-0b9e";
    deny_path(&buffer, "default", s, || once(call("unlisted", json!({"note": s})))).await;
    let s = "SENTINEL-hide-3d4d";
    deny_path(&buffer, "hide", s, || once(call("delete_job", json!({"job_id": s})))).await;
    let s = "SENTINEL-limit-92aa";
    for i in 0..10 {
        once(call("cancel_run", json!({"run_id": i}))).await;
    }
    deny_path(&buffer, "limit", s, || once(call("cancel_run", json!({"run_id": s})))).await;
    let s = "SENTINEL-approve-c0de";
    deny_path(&buffer, "approve without elicitation", s, || {
        once(call("execute_sql", json!({"statement": format!("DELETE FROM {s}")})))
    })
    .await;
    let s = "SENTINEL-output-schema-e1e1";
    deny_path(&buffer, "deny of a tool with an output schema", s, || {
        once(call("report", json!({"forbidden": s})))
    })
    .await;

    // The human declines.
    let c = connect(Some(false), legacy()).await;
    let s = "SENTINEL-declined-4b4b";
    deny_path(&buffer, "declined", s, || async {
        Some(
            c.client
                .call_tool(call("execute_sql", json!({"statement": format!("DELETE FROM {s}")})))
                .await
                .unwrap(),
        )
    })
    .await;
    // The human declines, in an input_required round.
    let c = connect(Some(false), ProtocolVersion::LATEST).await;
    let s = "SENTINEL-declined-round-6f6f";
    deny_path(&buffer, "declined in a round", s, || async {
        Some(
            c.client
                .call_tool(call("execute_sql", json!({"statement": format!("DELETE FROM {s}")})))
                .await
                .unwrap(),
        )
    })
    .await;
    // A forged requestState in a round.
    let c = connect(Some(true), ProtocolVersion::LATEST).await;
    let s = "SENTINEL-forged-state-8e8e";
    deny_path(&buffer, "forged requestState", s, || async {
        let mut p = call("execute_sql", json!({"statement": format!("DELETE FROM {s}")}));
        let mut responses = rmcp::model::InputResponses::new();
        responses.insert(
            APPROVAL_INPUT.to_owned(),
            json!({"action": "accept", "content": {"approve": true}}),
        );
        p.input_responses = Some(responses);
        p.request_state = Some("forged".to_owned());
        match c.client.call_tool_once(p).await.unwrap() {
            CallToolResponse::Complete(r) => Some(r),
            other => panic!("{other:?}"),
        }
    })
    .await;
    // Asking the human fails.
    let human = Human { approve: Some(true), fail: true, gate: None };
    let c = connect_human(Some(POLICY), human, legacy()).await;
    let s = "SENTINEL-failed-ask-9d9d";
    deny_path(&buffer, "failed elicitation", s, || async {
        Some(
            c.client
                .call_tool(call("execute_sql", json!({"statement": format!("DELETE FROM {s}")})))
                .await
                .unwrap(),
        )
    })
    .await;
    // The client cancels while the human decides.
    let gate = Gate::default();
    let human = Human { approve: Some(true), fail: false, gate: Some(gate.clone()) };
    let c = connect_human(Some(POLICY), human, legacy()).await;
    let s = "SENTINEL-cancelled-1c1c";
    deny_path(&buffer, "cancelled", s, || async {
        let p = call("execute_sql", json!({"statement": format!("DELETE FROM {s}")}));
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(p));
        let handle = c
            .client
            .peer()
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .unwrap();
        gate.asked.notified().await;
        handle.cancel(None).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(60), c.server.finished.notified())
            .await
            .unwrap();
        gate.release.notify_one();
        None
    })
    .await;
}

#[tokio::test]
async fn an_arguments_schema_deny_puts_no_argument_value_in_an_audit_event() {
    use serde_json::json;
    let (buffer, _default) = capture();
    let c = support::connect(None, ProtocolVersion::V_2025_11_25).await;
    let s = "SENTINEL-schema-2e2e";
    deny_path(&buffer, "arguments schema", s, || async {
        Some(
            c.client
                .call_tool(call("create_cluster", json!({"cluster_name": "x", "num_workers": s})))
                .await
                .unwrap(),
        )
    })
    .await;
}
