//! A guarded rmcp server and a real rmcp client, connected in one process.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::{DispatchError, PolicyGuard};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ContentBlock, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability,
    Implementation, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient, RoleServer,
    ServerHandler, ServiceExt,
};
use serde_json::json;

/// The seed policy plus the rules the end-to-end tests exercise.
pub const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "hide": ["delete_job"],
  "tools": {
    "list_clusters": {},
    "flaky": { "limits": [{ "counter": "flaky", "window": "hour", "max": 1 }] },
    "cancel_run": {
      "limits": [{ "counter": "cancel_run_rate", "window": "minute", "max": 10, "scope": "grant" }]
    },
    "create_cluster": {
      "arguments": { "type": "object", "required": ["cluster_name"],
                     "properties": { "num_workers": { "type": "integer", "maximum": 8 } } }
    },
    "read_path": {
      "require": [{ "name": "data", "conditions": [{ "path": "args.path", "op": "within", "value": "/data" }],
                    "on_deny": "only paths under /data" }]
    },
    "unreachable": { "limits": [{ "counter": "unreachable", "window": "hour", "max": 1 }] },
    "report": {
      "deny_if": [{ "conditions": [{ "path": "args.forbidden", "op": "exists" }],
                    "on_deny": "this report is forbidden" }],
      "approve_if": [{ "conditions": [{ "path": "args.sensitive", "op": "exists" }],
                       "reason": "a sensitive report needs a human" }],
      "limits": [{ "counter": "reports", "window": "hour", "max": 3 }]
    },
    "execute_sql": {
      "deny_if": [{ "conditions": [{ "path": "args.statement", "op": "regex", "value": "(?i)\\bdrop\\b" }],
                    "on_deny": "DROP is not allowed" }],
      "approve_if": [{ "conditions": [{ "path": "args.statement", "op": "regex", "value": "(?i)^\\s*delete\\b" }],
                       "reason": "deleting data needs a human" }]
    }
  }
}"#;

/// A server with a few tools, every call guarded.
#[derive(Clone)]
pub struct GuardedServer {
    pub guard: Option<PolicyGuard>,
    /// How many calls reached the tools.
    pub dispatched: Arc<AtomicUsize>,
    /// How many calls came back with `inputResponses` (input_required rounds).
    pub retries: Arc<AtomicUsize>,
    /// Notified each time the guard has answered a call (even one whose answer the client will
    /// never see because it cancelled the call).
    pub finished: Arc<Notify>,
}

pub fn tools() -> Vec<Tool> {
    let object = |schema: serde_json::Value| Arc::new(schema.as_object().cloned().unwrap());
    [
        "list_clusters",
        "cancel_run",
        "delete_job",
        "create_cluster",
        "execute_sql",
        "flaky",
        "unreachable",
        "unlisted",
    ]
    .into_iter()
    .map(|name| Tool::new(name, format!("the {name} tool"), object(json!({"type": "object"}))))
    .chain([Tool::new(
        "report",
        "a report with an output schema",
        object(json!({"type": "object"})),
    )
    .with_raw_output_schema(object(json!({
        "type": "object",
        "properties": {"rows": {"type": "integer"}},
        "required": ["rows"]
    })))])
    .collect()
}

impl ServerHandler for GuardedServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = match &self.guard {
            Some(g) => g.filter_tools(tools()),
            None => tools(),
        };
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.input_responses.is_some() {
            self.retries.fetch_add(1, Ordering::SeqCst);
        }
        let dispatched = self.dispatched.clone();
        let dispatch = move |request: CallToolRequestParams, _context| async move {
            dispatched.fetch_add(1, Ordering::SeqCst);
            if request.name == "flaky" {
                // The tool ran, and failed.
                return Ok(CallToolResult::error(vec![ContentBlock::text("upstream failed")]));
            }
            if request.name == "unreachable" {
                return Err(DispatchError::NotDispatched(ErrorData::internal_error(
                    "upstream unreachable",
                    None,
                )));
            }
            if request.name == "report" {
                let mut r = CallToolResult::structured(json!({"rows": 3}));
                r.is_error = Some(false);
                return Ok(r);
            }
            let args = serde_json::Value::Object(request.arguments.unwrap_or_default());
            Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "ran {} with {args}",
                request.name
            ))]))
        };
        let response = match &self.guard {
            Some(g) => g.call_tool(request, context, dispatch).await,
            None => {
                dispatch(request, context).await.map(Into::into).map_err(|e| e.error_data().clone())
            }
        };
        self.finished.notify_one();
        response
    }
}

/// Holds the human's answer back: `asked` is notified when the elicitation arrives, and the
/// answer goes out once `release` is notified.
#[derive(Clone, Default)]
pub struct Gate {
    pub asked: Arc<Notify>,
    pub release: Arc<Notify>,
}

/// How the client's human behaves.
#[derive(Clone, Default)]
pub struct Human {
    /// Approves (`Some(true)`), declines (`Some(false)`) or cannot be asked (`None`: the client
    /// does not declare elicitation).
    pub approve: Option<bool>,
    /// Asking fails: the elicitation request gets a JSON-RPC error.
    pub fail: bool,
    /// The answer waits for the test.
    pub gate: Option<Gate>,
}

/// A client whose human approves (`Some(true)`), declines (`Some(false)`) or cannot be asked
/// (`None`: no elicitation capability).
#[derive(Clone)]
pub struct TestClient {
    pub approve: Option<bool>,
    pub human: Human,
    pub protocol: ProtocolVersion,
    pub asked: Arc<AtomicUsize>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.approve.is_some() {
            capabilities.elicitation = Some(ElicitationCapability::new());
        }
        let mut config =
            ClientConfig::new(capabilities, Implementation::new("mcp-policy-test", "0.1.0"));
        config.protocol_version = self.protocol.clone();
        config
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        assert!(message.contains("needs a human"), "{message}");
        if let Some(gate) = &self.human.gate {
            gate.asked.notify_one();
            gate.release.notified().await;
        }
        if self.human.fail {
            return Err(ErrorData::internal_error("the client's form could not be shown", None));
        }
        Ok(match self.approve {
            Some(true) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"approve": true}))
            }
            _ => ElicitResult::new(ElicitationAction::Decline),
        })
    }
}

pub struct Connected {
    pub client: RunningService<RoleClient, TestClient>,
    /// The server's side of the connection, to make request contexts outside a request (for
    /// protocols with `initialize` only: without it, the server starts with the first request).
    pub server_peer: Option<rmcp::service::Peer<RoleServer>>,
    pub server: GuardedServer,
    pub asked: Arc<AtomicUsize>,
}

/// A guarded server (the policy above, grant `"agent-7"`) and a client over an in-memory duplex.
pub async fn connect(approve: Option<bool>, protocol: ProtocolVersion) -> Connected {
    connect_with(Some(POLICY), approve, protocol).await
}

pub async fn connect_with(
    policy: Option<&str>,
    approve: Option<bool>,
    protocol: ProtocolVersion,
) -> Connected {
    connect_human(policy, Human { approve, ..Human::default() }, protocol).await
}

/// A guarded server and a client whose human behaves as `human` says.
pub async fn connect_human(
    policy: Option<&str>,
    human: Human,
    protocol: ProtocolVersion,
) -> Connected {
    let approve = human.approve;
    let guard = policy.map(|p| {
        let evaluator = Evaluator::new(Policy::from_json_str(p).unwrap());
        PolicyGuard::new(Arc::new(evaluator)).with_fixed_grant("agent-7").with_tools(&tools())
    });
    let server = GuardedServer {
        guard,
        dispatched: Arc::new(AtomicUsize::new(0)),
        retries: Arc::new(AtomicUsize::new(0)),
        finished: Arc::new(Notify::new()),
    };
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let s = server.clone();
    let (peer_tx, peer_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let running = s.serve(server_io).await.unwrap();
        let _ = peer_tx.send(running.peer().clone());
        let _ = running.waiting().await;
    });
    let asked = Arc::new(AtomicUsize::new(0));
    let handler = TestClient { approve, human, protocol: protocol.clone(), asked: asked.clone() };
    let client = if protocol.has_initialize() {
        handler.serve(client_io).await.unwrap()
    } else {
        // 2026-07-28 and later have no `initialize`: the client discovers the server instead.
        let mode = ClientLifecycleMode::Discover { preferred_versions: vec![protocol] };
        handler.serve_with_lifecycle(client_io, mode).await.unwrap()
    };
    let server_peer = if client.peer_info().is_some_and(|i| i.protocol_version.has_initialize()) {
        Some(peer_rx.await.unwrap())
    } else {
        None
    };
    Connected { client, server_peer, server, asked }
}
