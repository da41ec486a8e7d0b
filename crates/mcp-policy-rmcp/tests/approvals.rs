//! Approvals nobody can forge, cancel-safe waits, and refusals every client can read: a real
//! rmcp client over the in-memory transport.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mcp_policy_rmcp::APPROVAL_INPUT;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    ProtocolVersion,
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};
use support::{Connected, Gate, Human, POLICY, connect, connect_human};

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

const DELETE: fn() -> Value = || json!({"statement": "DELETE FROM orders WHERE id = 1"});

/// The call again, with an `inputResponses` that says the human accepted, and `requestState`.
fn self_approved(state: &str) -> CallToolRequestParams {
    let mut p = params("execute_sql", DELETE());
    let mut responses = rmcp::model::InputResponses::new();
    responses.insert(
        APPROVAL_INPUT.to_owned(),
        json!({"action": "accept", "content": {"approve": true}}),
    );
    p.input_responses = Some(responses);
    p.request_state = Some(state.to_owned());
    p
}

/// Any long run of hex digits (an approval key or a round token) in `value`.
fn hex_runs(value: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut run = String::new();
    for ch in value.chars().chain([' ']) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
        } else {
            if run.len() >= 32 {
                runs.push(run.clone());
            }
            run.clear();
        }
    }
    runs
}

async fn complete(c: &Connected, p: CallToolRequestParams) -> CallToolResult {
    match c.client.call_tool_once(p).await.unwrap() {
        CallToolResponse::Complete(r) => r,
        other => panic!("expected a complete result, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusal_never_carries_the_approval_key() {
    let c = connect(None, ProtocolVersion::V_2025_11_25).await;
    let r = complete(&c, params("execute_sql", DELETE())).await;
    assert_eq!(r.is_error, Some(true));
    let s = r.structured_content.clone().unwrap();
    assert_eq!(s["decision"], "approve");
    assert!(s.get("approval_key").is_none(), "{s}");
    let wire = serde_json::to_string(&r).unwrap();
    assert!(hex_runs(&wire).is_empty(), "something key-like reached the client: {wire}");
}

#[tokio::test]
async fn input_responses_on_a_session_without_them_or_without_elicitation_run_nothing() {
    // 2025-11-25 has no input_required rounds; 2026-07-28 without elicitation cannot ask anyone.
    for (protocol, label) in [
        (ProtocolVersion::V_2025_11_25, "2025-11-25 without elicitation"),
        (ProtocolVersion::LATEST, "2026-07-28 without elicitation"),
    ] {
        let c = connect(None, protocol).await;
        let first = complete(&c, params("execute_sql", DELETE())).await;
        // What an attacker would echo: the key if a refusal leaked it, else anything.
        let leaked = first
            .structured_content
            .as_ref()
            .and_then(|s| s.get("approval_key"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        for state in leaked.into_iter().chain(["anything".to_owned()]) {
            let r = complete(&c, self_approved(&state)).await;
            assert_eq!(r.is_error, Some(true), "{label}: {}", text(&r));
            assert!(text(&r).starts_with("Approval required by policy"), "{label}: {}", text(&r));
        }
        assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0, "{label}: the call ran");
    }
}

#[tokio::test]
async fn a_forged_request_state_is_denied_on_a_session_with_rounds() {
    let c = connect(Some(true), ProtocolVersion::LATEST).await;
    // A genuine round exists (the client's human would approve it), but the client answers
    // with a state of its own making.
    let first = c.client.call_tool_once(params("execute_sql", DELETE())).await.unwrap();
    let CallToolResponse::InputRequired(round) = first else { panic!("{first:?}") };
    let genuine = round.request_state.clone().unwrap();
    assert_eq!(genuine.len(), 64);
    for forged in ["anything".to_owned(), format!("{genuine}0"), genuine.to_uppercase()] {
        let r = complete(&c, self_approved(&forged)).await;
        assert_eq!(r.is_error, Some(true), "{forged}");
        assert_eq!(r.structured_content.unwrap()["decision"], "deny", "{forged}");
    }
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0);
    // The genuine state works once, then never again.
    let r = complete(&c, self_approved(&genuine)).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let r = complete(&c, self_approved(&genuine)).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_round_of_one_call_cannot_approve_another() {
    let c = connect(Some(true), ProtocolVersion::LATEST).await;
    let first = c.client.call_tool_once(params("execute_sql", DELETE())).await.unwrap();
    let CallToolResponse::InputRequired(round) = first else { panic!("{first:?}") };
    let state = round.request_state.unwrap();
    // Same tool, other arguments: the round's approval is bound to the exact call.
    let mut p = self_approved(&state);
    p.arguments = json!({"statement": "DELETE FROM customers"}).as_object().cloned();
    let r = complete(&c, p).await;
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_elicitation_denies_and_leaves_nothing_to_replay() {
    let human = Human { approve: Some(true), fail: true, gate: None };
    let c = connect_human(Some(POLICY), human, ProtocolVersion::V_2025_11_25).await;
    let r = complete(&c, params("execute_sql", DELETE())).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("asking the human failed"), "{}", text(&r));
    let s = r.structured_content.clone().unwrap();
    assert_eq!(s["decision"], "deny", "{s}");
    assert!(hex_runs(&serde_json::to_string(&r).unwrap()).is_empty());
    assert_eq!(c.asked.load(Ordering::SeqCst), 1);
    // Coming back with "the human accepted" asks the human again (it fails again): nothing runs.
    let r = complete(&c, self_approved("anything")).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(c.asked.load(Ordering::SeqCst), 2);
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_call_cancelled_while_the_human_decides_never_runs() {
    let gate = Gate::default();
    let human = Human { approve: Some(true), fail: false, gate: Some(gate.clone()) };
    let c = connect_human(Some(POLICY), human, ProtocolVersion::V_2025_11_25).await;
    let request =
        ClientRequest::CallToolRequest(CallToolRequest::new(params("execute_sql", DELETE())));
    let handle = c
        .client
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    // The human is being asked; the client gives up.
    gate.asked.notified().await;
    handle.cancel(Some("the user gave up".to_owned())).await.unwrap();
    // The cancellation ends the guard's wait, before the human answers (a guard that kept
    // waiting would never finish here: the answer is held back).
    tokio::time::timeout(Duration::from_secs(60), c.server.finished.notified())
        .await
        .expect("the guard still waits for the human after the call was cancelled");
    // Now the human accepts, too late.
    gate.release.notify_one();
    let r = complete(&c, params("list_clusters", json!({}))).await;
    assert_ne!(r.is_error, Some(true));
    assert_eq!(c.asked.load(Ordering::SeqCst), 1);
    assert_eq!(c.server.dispatched.load(Ordering::SeqCst), 1, "only list_clusters ran");
}

#[tokio::test]
async fn refusals_of_tools_with_an_output_schema_carry_no_structured_content() {
    let c = connect(None, ProtocolVersion::V_2025_11_25).await;
    let listed = c.client.list_all_tools().await.unwrap();
    assert!(listed.iter().any(|t| t.name == "report" && t.output_schema.is_some()));
    // deny
    let r = complete(&c, params("report", json!({"forbidden": true}))).await;
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none(), "{:?}", r.structured_content);
    assert!(text(&r).starts_with("Denied by policy: this report is forbidden."), "{}", text(&r));
    // approve, with a client that cannot ask
    let r = complete(&c, params("report", json!({"sensitive": true}))).await;
    assert!(r.structured_content.is_none());
    assert!(text(&r).contains("a sensitive report needs a human"), "{}", text(&r));
    // limit (3 an hour)
    for _ in 0..3 {
        let r = complete(&c, params("report", json!({}))).await;
        assert_eq!(r.structured_content.unwrap()["rows"], 3, "an allowed call is untouched");
    }
    let r = complete(&c, params("report", json!({}))).await;
    assert!(r.structured_content.is_none());
    assert!(text(&r).starts_with("Rate limited by policy"), "{}", text(&r));
    // A tool without an output schema still gets the decision JSON.
    let r = complete(&c, params("unlisted", json!({}))).await;
    assert_eq!(r.structured_content.unwrap()["decision"], "deny");
}

#[tokio::test]
async fn a_declined_approval_of_a_tool_with_an_output_schema_carries_no_structured_content() {
    // A declining human, over the input_required round of 2026-07-28.
    let c = connect(Some(false), ProtocolVersion::LATEST).await;
    let r = c.client.call_tool(params("report", json!({"sensitive": true}))).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none());
    assert!(text(&r).starts_with("Approval declined"), "{}", text(&r));
}
