//! A server written with rmcp's `#[tool_router]` / `#[tool_handler]` macros, guarded with one
//! attribute argument, driven by a real rmcp client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::PolicyGuard;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{InputResponses, RequestState, ToolCallContext};
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CreateTaskResult, ElicitRequest,
    ElicitRequestParams, ElicitationSchema, InputRequest, InputRequests, InputRequiredResult,
    NumberOrString, PrimitiveSchemaDefinition, ProtocolVersion, StringSchema, Task, TaskStatus,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, RoleServer, ServerHandler, ServiceExt,
};
use rmcp::{tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{Human, TestClient};

const POLICY: &str = r#"{
  "version": "1",
  "default": "allow",
  "hide": ["secret_tool"],
  "tools": {
    "stats": { "deny_if": [{ "conditions": [{ "path": "args.table", "op": "eq", "value": "salaries" }],
                             "on_deny": "no statistics of salaries" }] },
    "nope": { "limits": [{ "counter": "nope", "window": "hour", "max": 1 }] },
    "start_job": { "limits": [{ "counter": "jobs", "window": "hour", "max": 1 }] }
  }
}"#;

#[derive(Clone)]
struct RouterServer {
    guard: PolicyGuard,
    tool_router: ToolRouter<Self>,
    ran: Arc<AtomicUsize>,
}

#[derive(Deserialize, JsonSchema)]
struct TableArgs {
    table: String,
}

#[derive(Serialize, JsonSchema)]
struct Stats {
    rows: u64,
}

#[tool_router]
impl RouterServer {
    #[tool(description = "Row count of a table")]
    async fn stats(&self, Parameters(TableArgs { table }): Parameters<TableArgs>) -> Json<Stats> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        Json(Stats { rows: table.len() as u64 })
    }

    /// Asks the client for a name in an input_required round of its own.
    #[tool(description = "Greets someone, asking who first")]
    async fn greet(
        &self,
        InputResponses(responses): InputResponses,
        RequestState(state): RequestState,
    ) -> CallToolResponse {
        self.ran.fetch_add(1, Ordering::SeqCst);
        let name = responses
            .as_ref()
            .and_then(|r| r.get("who"))
            .and_then(|r| r["content"]["name"].as_str())
            .map(str::to_owned);
        match (name, state.as_deref()) {
            (Some(name), Some("greet-round-1")) => {
                CallToolResult::success(vec![rmcp::model::ContentBlock::text(format!(
                    "hello {name}"
                ))])
                .into()
            }
            _ => {
                let schema = ElicitationSchema::builder()
                    .required_property(
                        "name",
                        PrimitiveSchemaDefinition::String(StringSchema::new()),
                    )
                    .build()
                    .unwrap();
                let mut requests = InputRequests::new();
                requests.insert(
                    "who".to_owned(),
                    InputRequest::Elicitation(ElicitRequest::new(
                        ElicitRequestParams::FormElicitationParams {
                            meta: None,
                            message: "Who? (this does not need a human's approval)".to_owned(),
                            requested_schema: schema,
                        },
                    )),
                );
                InputRequiredResult::new(Some(requests), Some("greet-round-1".to_owned())).into()
            }
        }
    }

    #[tool(description = "Starts a long job as a task")]
    async fn start_job(&self) -> CallToolResponse {
        self.ran.fetch_add(1, Ordering::SeqCst);
        CallToolResponse::Task(CreateTaskResult::new(Task::new(
            "job-1",
            TaskStatus::Working,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        )))
    }

    #[tool(description = "Nobody may see this")]
    async fn secret_tool(&self) -> String {
        self.ran.fetch_add(1, Ordering::SeqCst);
        "secret".to_owned()
    }
}

#[tool_handler(router = self.guard.router(&self.tool_router))]
impl ServerHandler for RouterServer {}

struct Connected {
    client: RunningService<RoleClient, TestClient>,
    server: RouterServer,
    server_peer: Option<rmcp::service::Peer<RoleServer>>,
}

fn new_guard() -> PolicyGuard {
    PolicyGuard::new(Arc::new(Evaluator::new(Policy::from_json_str(POLICY).unwrap())))
        .with_fixed_grant("router-user")
}

async fn connect(protocol: ProtocolVersion) -> Connected {
    connect_guard(new_guard(), protocol).await
}

async fn connect_guard(guard: PolicyGuard, protocol: ProtocolVersion) -> Connected {
    let server = RouterServer {
        guard,
        tool_router: RouterServer::tool_router(),
        ran: Arc::new(AtomicUsize::new(0)),
    };
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let s = server.clone();
    let (peer_tx, peer_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let running = s.serve(server_io).await.unwrap();
        let _ = peer_tx.send(running.peer().clone());
        let _ = running.waiting().await;
    });
    let handler = TestClient {
        approve: Some(true),
        human: Human { approve: Some(true), ..Human::default() },
        protocol: protocol.clone(),
        asked: Arc::new(AtomicUsize::new(0)),
    };
    let client = if protocol.has_initialize() {
        handler.serve(client_io).await.unwrap()
    } else {
        let mode = ClientLifecycleMode::Discover { preferred_versions: vec![protocol.clone()] };
        handler.serve_with_lifecycle(client_io, mode).await.unwrap()
    };
    let server_peer = if protocol.has_initialize() { Some(peer_rx.await.unwrap()) } else { None };
    Connected { client, server, server_peer }
}

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

async fn complete(c: &Connected, p: CallToolRequestParams) -> CallToolResult {
    match c.client.call_tool_once(p).await.unwrap() {
        CallToolResponse::Complete(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_router_lists_only_visible_tools_and_guards_calls() {
    let c = connect(ProtocolVersion::V_2025_11_25).await;
    let names: Vec<String> =
        c.client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["greet", "start_job", "stats"]);
    assert!(c.server.get_tool("secret_tool").is_none(), "hidden as in tools/list");
    assert!(c.server.get_tool("stats").is_some());

    let r = complete(&c, params("stats", json!({"table": "orders"}))).await;
    assert_eq!(r.structured_content.unwrap(), json!({"rows": 6}));
    // `stats` has an output schema: its refusal is text alone.
    let r = complete(&c, params("stats", json!({"table": "salaries"}))).await;
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none());
    assert!(text(&r).starts_with("Denied by policy: no statistics of salaries."), "{}", text(&r));
    // A hidden tool is refused as a tool nobody has heard of: the client does not see `/hide/0`.
    let r = complete(&c, params("secret_tool", json!({}))).await;
    assert_eq!(r.structured_content.unwrap()["rule"], "/default");
    assert_eq!(c.server.ran.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_the_router_cannot_route_gets_its_units_back() {
    let c = connect(ProtocolVersion::V_2025_11_25).await;
    // `nope` is allowed once an hour, but no route has that name: nothing ran, nothing spent.
    for _ in 0..3 {
        let e = c.client.call_tool_once(params("nope", json!({}))).await.unwrap_err();
        assert!(e.to_string().contains("tool not found"), "{e}");
    }
}

#[tokio::test]
async fn a_tools_own_input_required_round_passes_through_the_guard() {
    let c = connect(ProtocolVersion::LATEST).await;
    let first = c.client.call_tool_once(params("greet", json!({}))).await.unwrap();
    let CallToolResponse::InputRequired(round) = first else { panic!("{first:?}") };
    assert_eq!(round.request_state.as_deref(), Some("greet-round-1"));
    assert!(round.input_requests.unwrap().contains_key("who"));
    let mut again = params("greet", json!({}));
    let mut responses = rmcp::model::InputResponses::new();
    responses.insert("who".to_owned(), json!({"action": "accept", "content": {"name": "Ada"}}));
    again.input_responses = Some(responses);
    again.request_state = Some("greet-round-1".to_owned());
    let r = complete(&c, again).await;
    assert_eq!(text(&r), "hello Ada");
    assert_eq!(c.server.ran.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_task_result_passes_through_the_guard_and_is_charged() {
    let c = connect(ProtocolVersion::V_2025_11_25).await;
    let peer = c.server_peer.clone().unwrap();
    let guarded = c.server.guard.router(&c.server.tool_router);
    let call = |id| {
        let context = RequestContext::new(NumberOrString::Number(id), peer.clone());
        ToolCallContext::new(&c.server, params("start_job", json!({})), context)
    };
    let r = guarded.call(call(1)).await.unwrap();
    let CallToolResponse::Task(task) = r else { panic!("{r:?}") };
    assert_eq!(task.task.task_id, "job-1");
    // One job an hour: the task counted.
    let r = guarded.call(call(2)).await.unwrap();
    let CallToolResponse::Complete(r) = r else { panic!("{r:?}") };
    assert_eq!(r.structured_content.unwrap()["decision"], "limit");
    assert_eq!(c.server.ran.load(Ordering::SeqCst), 1);
}

async fn start(c: &Connected) {
    // What comes back (a task) is not the point: the charge is.
    let _ = c.client.call_tool_once(params("start_job", json!({}))).await;
}

#[tokio::test]
async fn sessions_share_counts_through_one_guard_and_not_through_two() {
    // One guard, cloned into two sessions: `start_job` (once an hour) runs once in all.
    let guard = new_guard();
    let a = connect_guard(guard.clone(), ProtocolVersion::V_2025_11_25).await;
    let b = connect_guard(guard, ProtocolVersion::V_2025_11_25).await;
    let ran = |c: &Connected| c.server.ran.load(Ordering::SeqCst);
    start(&a).await;
    let r = complete(&b, params("start_job", json!({}))).await;
    assert_eq!(r.structured_content.unwrap()["decision"], "limit");
    assert_eq!(ran(&a) + ran(&b), 1);
    // A guard built per session counts per session: both run.
    let c = connect(ProtocolVersion::V_2025_11_25).await;
    let d = connect(ProtocolVersion::V_2025_11_25).await;
    start(&c).await;
    start(&d).await;
    assert_eq!(ran(&c) + ran(&d), 2);
}
