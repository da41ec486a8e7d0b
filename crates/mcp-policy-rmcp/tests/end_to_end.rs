//! A real rmcp client calls a guarded rmcp server over an in-memory transport.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::Ordering;

use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use serde_json::{Value, json};
use support::{Connected, connect};

fn params(tool: &'static str, args: Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(tool);
    p.arguments = args.as_object().cloned();
    p
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn call(c: &Connected, tool: &'static str, args: Value) -> CallToolResult {
    c.client.call_tool(params(tool, args)).await.unwrap()
}

const LEGACY: fn() -> ProtocolVersion = || ProtocolVersion::V_2025_11_25;

#[tokio::test]
async fn an_allowed_call_returns_the_tools_result() {
    let c = connect(Some(true), LEGACY()).await;
    let r = call(&c, "list_clusters", json!({"limit": 3})).await;
    assert_ne!(r.is_error, Some(true));
    assert_eq!(text(&r), "ran list_clusters with {\"limit\":3}");
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_denied_call_is_an_error_with_the_policys_message_and_rule() {
    let c = connect(Some(true), LEGACY()).await;
    let r = call(&c, "execute_sql", json!({"statement": "DROP TABLE users"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("Denied by policy: DROP is not allowed."), "{}", text(&r));
    let s = r.structured_content.unwrap();
    assert_eq!(s["decision"], "deny");
    assert_eq!(s["rule"], "/tools/execute_sql/deny_if/0");
    assert_eq!(s["message"], "DROP is not allowed");
    // A tool the policy does not name.
    let r = call(&c, "unlisted", json!({})).await;
    assert_eq!(r.structured_content.unwrap()["rule"], "/default");
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0, "no denied call reaches a tool");
}

#[tokio::test]
async fn the_eleventh_cancel_run_in_a_minute_is_limited_with_retry_after() {
    let c = connect(Some(true), LEGACY()).await;
    for i in 0..10 {
        let r = call(&c, "cancel_run", json!({"run_id": i})).await;
        assert_ne!(r.is_error, Some(true), "call {i}: {}", text(&r));
    }
    let r = call(&c, "cancel_run", json!({"run_id": 10})).await;
    assert_eq!(r.is_error, Some(true));
    let s = r.structured_content.clone().unwrap();
    assert_eq!(s["decision"], "limit");
    assert_eq!(s["rule"], "/tools/cancel_run/limits/0");
    let retry = s["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 60.0, "{retry}");
    assert!(text(&r).contains("Retry after"), "{}", text(&r));
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_hidden_tool_is_not_listed_and_is_denied_when_called_anyway() {
    let c = connect(Some(true), LEGACY()).await;
    let listed: Vec<String> =
        c.client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(!listed.contains(&"delete_job".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"unlisted".to_owned()), "only the default names it: {listed:?}");
    assert!(listed.contains(&"list_clusters".to_owned()), "{listed:?}");
    let r = call(&c, "delete_job", json!({"job_id": 1})).await;
    assert_eq!(r.is_error, Some(true));
    // Refused exactly like a tool nobody has heard of: the hide list is not revealed.
    let unknown = call(&c, "no_such_tool", json!({"job_id": 1})).await;
    assert_eq!(text(&r), text(&unknown));
    let (s, u) = (r.structured_content.unwrap(), unknown.structured_content.unwrap());
    assert_eq!(s["rule"], "/default");
    assert_eq!(
        (&s["rule"], &s["message"], &s["decision"]),
        (&u["rule"], &u["message"], &u["decision"])
    );
}

#[tokio::test]
async fn arguments_violating_the_schema_are_denied_naming_the_argument() {
    let c = connect(Some(true), LEGACY()).await;
    let r = call(&c, "create_cluster", json!({"cluster_name": "etl", "num_workers": 64})).await;
    assert_eq!(r.is_error, Some(true));
    let s = r.structured_content.unwrap();
    assert_eq!(s["rule"], "/tools/create_cluster/arguments");
    assert!(s["message"].as_str().unwrap().contains("`/num_workers`"), "{s}");
    let r = call(&c, "create_cluster", json!({"cluster_name": "etl", "num_workers": 4})).await;
    assert_ne!(r.is_error, Some(true));
}

async fn approval_round(
    approve: Option<bool>,
    protocol: ProtocolVersion,
) -> (Connected, CallToolResult) {
    let c = connect(approve, protocol).await;
    let r = call(&c, "execute_sql", json!({"statement": "DELETE FROM orders WHERE id = 1"})).await;
    (c, r)
}

#[tokio::test]
async fn an_approval_accepted_through_elicitation_lets_the_call_through_once() {
    for protocol in [LEGACY(), ProtocolVersion::V_2025_06_18, ProtocolVersion::LATEST] {
        let (c, r) = approval_round(Some(true), protocol.clone()).await;
        assert_ne!(r.is_error, Some(true), "{protocol}: {}", text(&r));
        assert!(text(&r).starts_with("ran execute_sql"), "{protocol}: {}", text(&r));
        assert_eq!(c.asked.load(Ordering::SeqCst), 1, "{protocol}");
        assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 1, "{protocol}");
        // 2026-07-28 forbids server-to-client requests: the approval came as an input_required
        // round; older versions asked with an elicitation request during the call.
        let rounds = usize::from(!protocol.has_initialize());
        assert_eq!(c.server.retries.load(Ordering::SeqCst), rounds, "{protocol}");
        // The next identical call needs its own approval: the human is asked again.
        let r =
            call(&c, "execute_sql", json!({"statement": "DELETE FROM orders WHERE id = 1"})).await;
        assert_ne!(r.is_error, Some(true));
        assert_eq!(c.asked.load(Ordering::SeqCst), 2, "{protocol}");
    }
}

#[tokio::test]
async fn a_declined_approval_does_not_let_the_call_through() {
    for protocol in [LEGACY(), ProtocolVersion::LATEST] {
        let (c, r) = approval_round(Some(false), protocol.clone()).await;
        assert_eq!(r.is_error, Some(true), "{protocol}");
        assert!(text(&r).starts_with("Approval declined"), "{protocol}: {}", text(&r));
        assert_eq!(c.asked.load(Ordering::SeqCst), 1);
        assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_client_without_elicitation_gets_an_error_naming_what_needs_approval() {
    let (c, r) = approval_round(None, LEGACY()).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.starts_with("Approval required by policy: deleting data needs a human."), "{t}");
    assert!(t.contains("does not support elicitation"), "{t}");
    let s = r.structured_content.unwrap();
    assert_eq!(s["decision"], "approve");
    assert_eq!(s["rule"], "/tools/execute_sql/approve_if/0");
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tool_error_keeps_its_charge() {
    let c = connect(Some(true), LEGACY()).await;
    // `flaky` allows one call an hour and always fails: it ran, so the unit stays spent.
    let r = call(&c, "flaky", json!({})).await;
    assert_eq!(text(&r), "upstream failed");
    assert_eq!(r.is_error, Some(true));
    for _ in 0..3 {
        let r = call(&c, "flaky", json!({})).await;
        assert_eq!(r.structured_content.unwrap()["decision"], "limit");
    }
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_that_was_not_dispatched_gets_its_units_back() {
    let c = connect(Some(true), LEGACY()).await;
    // `unreachable` allows one call an hour; its dispatch says the upstream was never reached.
    for _ in 0..3 {
        let e = c.client.call_tool(params("unreachable", json!({}))).await.unwrap_err();
        assert!(e.to_string().contains("upstream unreachable"), "{e}");
    }
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 3, "each call was admitted");
}

#[tokio::test]
async fn a_call_cancelled_before_dispatch_does_not_run_and_gets_its_units_back() {
    use mcp_policy_rmcp::DispatchError;
    use rmcp::model::{CallToolResponse, NumberOrString};
    use rmcp::service::RequestContext;

    let c = connect(Some(true), LEGACY()).await;
    let guard = c.server.guard.clone().unwrap();
    let peer = c.server_peer.clone().unwrap();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = |ran: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        move |_request: CallToolRequestParams, _context| async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, DispatchError>(CallToolResult::success(vec![]))
        }
    };
    // `flaky` allows one call an hour: three cancelled calls charge nothing, so the next runs.
    for id in 0..3 {
        let context = RequestContext::new(NumberOrString::Number(id), peer.clone());
        context.ct.cancel();
        let r = guard.call_tool(params("flaky", json!({})), context, run(ran.clone())).await;
        let Ok(CallToolResponse::Complete(r)) = r else { panic!("{r:?}") };
        assert_eq!(r.is_error, Some(true));
        assert!(text(&r).contains("cancelled"), "{}", text(&r));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let context = RequestContext::new(NumberOrString::Number(9), peer.clone());
    let r = guard.call_tool(params("flaky", json!({})), context, run(ran.clone())).await;
    assert!(
        matches!(r, Ok(CallToolResponse::Complete(ref r)) if r.is_error != Some(true)),
        "{r:?}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_error_of_unknown_cause_and_a_cancel_after_dispatch_keep_the_charge() {
    use mcp_policy_rmcp::DispatchError;
    use rmcp::model::{CallToolResponse, NumberOrString};
    use rmcp::service::RequestContext;

    // `flaky` allows one call an hour.
    for how in ["error", "cancelled while running"] {
        let c = connect(Some(true), LEGACY()).await;
        let guard = c.server.guard.clone().unwrap();
        let peer = c.server_peer.clone().unwrap();
        let context = RequestContext::new(NumberOrString::Number(1), peer.clone());
        let r = guard
            .call_tool(params("flaky", json!({})), context, |_request, context| async move {
                if how == "error" {
                    // What `?` makes of an `ErrorData`: the tool may have run.
                    Err(rmcp::ErrorData::internal_error("boom", None).into())
                } else {
                    context.ct.cancel();
                    Ok::<_, DispatchError>(CallToolResult::success(vec![]))
                }
            })
            .await;
        assert_eq!(r.is_err(), how == "error", "{how}: {r:?}");
        let context = RequestContext::new(NumberOrString::Number(2), peer.clone());
        let r = guard
            .call_tool(params("flaky", json!({})), context, |_r, _c| async {
                Ok::<_, DispatchError>(CallToolResult::success(vec![]))
            })
            .await;
        let Ok(CallToolResponse::Complete(r)) = r else { panic!("{how}: {r:?}") };
        assert_eq!(r.structured_content.unwrap()["decision"], "limit", "{how}");
    }
}
