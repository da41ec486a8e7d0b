//! # mcp-policy-rmcp
//!
//! Guards a server built on [`rmcp`], the official Rust MCP SDK, with an
//! [`mcp-policy`](mcp_policy) policy. The SDK has no middleware, so a [`PolicyGuard`] is called
//! from the two places of a `ServerHandler` that matter:
//!
//! - `list_tools`: [`PolicyGuard::filter_tools`] leaves out hidden tools and tools that only the
//!   default denies;
//! - `call_tool`: [`PolicyGuard::call_tool`] decides the call and either runs your dispatch or
//!   answers for it: a denied or limited call becomes a `CallToolResult` with `is_error: true`
//!   whose text the model can act on and whose structured content is the decision JSON; a call
//!   that needs approval asks the human through elicitation.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_policy::{Evaluator, Policy};
//! use mcp_policy_rmcp::PolicyGuard;
//! use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
//!                   ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig};
//! use rmcp::service::RequestContext;
//! use rmcp::{ErrorData, RoleServer, ServerHandler};
//!
//! struct MyServer { guard: PolicyGuard }
//!
//! impl ServerHandler for MyServer {
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
//!     }
//!     async fn list_tools(&self, _: Option<PaginatedRequestParams>, _: RequestContext<RoleServer>)
//!         -> Result<ListToolsResult, ErrorData> {
//!         Ok(ListToolsResult::with_all_items(self.guard.filter_tools(my_tools())))
//!     }
//!     async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>)
//!         -> Result<CallToolResponse, ErrorData> {
//!         self.guard.call_tool(request, context, |request, _context| async move {
//!             Ok(CallToolResult::success(vec![ContentBlock::text(format!("ran {}", request.name))]))
//!         }).await
//!     }
//! }
//! # fn my_tools() -> Vec<rmcp::model::Tool> { Vec::new() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::from_path("policy.json")?;
//! let guard = PolicyGuard::new(Arc::new(Evaluator::new(policy))).with_fixed_grant("stdio-user");
//! let server = MyServer { guard };
//! # Ok(()) }
//! ```
//!
//! ## Approvals and protocol versions
//!
//! When the policy answers **approve**, the guard asks the human, depending on what the client
//! negotiated:
//!
//! - protocol versions up to `2025-11-25` (with an `initialize` handshake), client declaring the
//!   `elicitation` capability: a server-to-client `elicitation/create` request during the call;
//! - protocol `2026-07-28` and later (no server-to-client requests), client declaring
//!   `elicitation`: an `input_required` result (SEP-2322) carrying the elicitation; the client
//!   answers by calling the tool again with `inputResponses`, and the guard takes the approval
//!   key back from `requestState`;
//! - a client without elicitation: an `isError` result that names the tool and why a human must
//!   approve it.
//!
//! An accepted approval lets exactly that call through once (steps 1 to 5 and the limits still
//! apply); a declined or cancelled one denies it.
//!
//! ## Audit
//!
//! Every decision is one `tracing` event at target `mcp_policy::audit` (level `INFO` for allow,
//! `WARN` otherwise) whose message is the decision's message and whose fields are `tool`,
//! `grant`, `session`, `decision`, `rule`, `policy` (the digest) and `argument_keys` (the
//! arguments' top-level keys, never their values).

use std::future::Future;
use std::sync::Arc;

use mcp_policy::{
    AsyncCounterStore, ChargeReceipt, Decision, DecisionKind, Evaluator, MemoryStore, ToolCall,
};
use rmcp::model::{
    BooleanSchema, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, InputRequests, InputRequiredResult, PrimitiveSchemaDefinition, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::Value;

/// The key of the guard's approval request in `inputRequests` / `inputResponses`.
pub const APPROVAL_INPUT: &str = "mcp-policy/approval";

/// Who is calling: what the policy sees as `grant`, `session` and `context`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The caller's credential id (a token's subject, an API key's id); `""` for anonymous.
    pub grant: String,
    /// The MCP session, if the transport has one.
    pub session: Option<String>,
    /// What conditions read under `context` (identity claims, environment); `None` is `{}`.
    pub context: Option<Value>,
}

type IdentityFn = dyn Fn(&RequestContext<RoleServer>) -> Identity + Send + Sync;

/// Decides every tool call of an rmcp server against a policy.
pub struct PolicyGuard<S = MemoryStore> {
    evaluator: Arc<Evaluator<S>>,
    identity: Arc<IdentityFn>,
}

impl<S> Clone for PolicyGuard<S> {
    fn clone(&self) -> Self {
        PolicyGuard { evaluator: self.evaluator.clone(), identity: self.identity.clone() }
    }
}

impl<S> std::fmt::Debug for PolicyGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGuard").field("evaluator", &self.evaluator).finish_non_exhaustive()
    }
}

/// The value of the HTTP header `name` of the request, when the transport is streamable HTTP.
///
/// ```no_run
/// # use mcp_policy_rmcp::{http_header, Identity, PolicyGuard};
/// # fn f(guard: PolicyGuard) -> PolicyGuard {
/// guard.with_identity(|context| Identity {
///     grant: http_header(context, "x-api-key-id").unwrap_or_default(),
///     session: http_header(context, "mcp-session-id"),
///     context: None,
/// })
/// # }
/// ```
pub fn http_header(context: &RequestContext<RoleServer>, name: &str) -> Option<String> {
    let parts = context.extensions.get::<http::request::Parts>()?;
    parts.headers.get(name)?.to_str().ok().map(str::to_owned)
}

impl<S> PolicyGuard<S> {
    /// A guard for `evaluator`. The grant is `""` (every caller shares one grant) and the session
    /// is the `mcp-session-id` HTTP header when there is one, until
    /// [`with_fixed_grant`](PolicyGuard::with_fixed_grant) or
    /// [`with_identity`](PolicyGuard::with_identity) says otherwise.
    pub fn new(evaluator: Arc<Evaluator<S>>) -> Self {
        PolicyGuard {
            evaluator,
            identity: Arc::new(|context: &RequestContext<RoleServer>| Identity {
                grant: String::new(),
                session: http_header(context, "mcp-session-id"),
                context: None,
            }),
        }
    }

    /// Every call has the grant `grant`: for a stdio server, whose one user is the process's.
    pub fn with_fixed_grant(self, grant: impl Into<String>) -> Self {
        let grant = grant.into();
        self.with_identity(move |context| Identity {
            grant: grant.clone(),
            session: http_header(context, "mcp-session-id"),
            context: None,
        })
    }

    /// Who is calling, from the request: a header, a verified token's claims, the transport.
    pub fn with_identity(
        mut self,
        identity: impl Fn(&RequestContext<RoleServer>) -> Identity + Send + Sync + 'static,
    ) -> Self {
        self.identity = Arc::new(identity);
        self
    }

    /// The evaluator (to reload the policy, for example).
    pub fn evaluator(&self) -> &Arc<Evaluator<S>> {
        &self.evaluator
    }

    /// The tools of `tools` that the policy lets a client see: hidden tools and tools that only
    /// the default denies are left out.
    pub fn filter_tools(&self, tools: Vec<Tool>) -> Vec<Tool> {
        let policy = self.evaluator.policy();
        tools.into_iter().filter(|t| policy.is_visible(&t.name)).collect()
    }
}

/// How a call that needs approval can ask the human.
enum ApprovalPath {
    /// A server-to-client `elicitation/create` request (protocols with `initialize`).
    Request,
    /// An `input_required` result (protocol 2026-07-28 and later).
    InputRequired,
    /// The client cannot be asked.
    None,
}

fn approval_path(context: &RequestContext<RoleServer>) -> ApprovalPath {
    let elicits = context.client_capabilities().is_some_and(|c| c.elicitation.is_some());
    if !elicits {
        return ApprovalPath::None;
    }
    match context.protocol_version() {
        Some(v) if !v.has_initialize() => ApprovalPath::InputRequired,
        _ => ApprovalPath::Request,
    }
}

/// What the guard does with a call.
enum Outcome {
    Dispatch(Option<ChargeReceipt>),
    Answer(CallToolResponse),
}

impl<S: AsyncCounterStore> PolicyGuard<S> {
    /// Decides `request` and either runs `dispatch` (allowed) or answers for it: an `isError`
    /// result for deny and limit, an approval round for approve. When the allowed call fails
    /// (`Err`, or a result with `is_error: true`), the units it charged are returned.
    pub async fn call_tool<F, Fut>(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        dispatch: F,
    ) -> Result<CallToolResponse, ErrorData>
    where
        F: FnOnce(CallToolRequestParams, RequestContext<RoleServer>) -> Fut,
        Fut: Future<Output = Result<CallToolResult, ErrorData>>,
    {
        let identity = (self.identity)(&context);
        let tool = request.name.to_string();
        let had_arguments = request.arguments.is_some();
        let arguments = Value::Object(request.arguments.take().unwrap_or_default());
        let answer = approval_answer(&mut request);
        let outcome = {
            let mut call = ToolCall::new(&tool)
                .with_arguments(&arguments)
                .with_grant(&identity.grant)
                .with_optional_session(identity.session.as_deref());
            if let Some(c) = &identity.context {
                call = call.with_context(c);
            }
            self.decide(&call, &context, answer).await
        };
        match outcome {
            Outcome::Answer(response) => Ok(response),
            Outcome::Dispatch(receipt) => {
                if had_arguments && let Value::Object(map) = arguments {
                    request.arguments = Some(map);
                }
                let result = dispatch(request, context).await;
                let failed = match &result {
                    Ok(r) => r.is_error == Some(true),
                    Err(_) => true,
                };
                if failed
                    && let Some(receipt) = receipt
                    && let Err(e) = self.evaluator.rollback_receipt_async(receipt).await
                {
                    tracing::warn!(
                        target: "mcp_policy::audit",
                        tool = %tool,
                        error = %e,
                        "could not roll back a failed call's units"
                    );
                }
                result.map(CallToolResponse::from)
            }
        }
    }

    async fn decide(
        &self,
        call: &ToolCall<'_>,
        context: &RequestContext<RoleServer>,
        answer: Option<Answer>,
    ) -> Outcome {
        // A call coming back with the human's answer (input_required round).
        if let Some(answer) = answer {
            return match answer {
                Answer::Approved(key) => {
                    let mut d = self.evaluator.evaluate_async(&call.with_approval_key(&key)).await;
                    self.audit(call, &d);
                    settle(&mut d)
                }
                Answer::Declined => Outcome::Answer(declined(call.tool()).into()),
            };
        }
        let mut d = self.evaluator.evaluate_async(call).await;
        self.audit(call, &d);
        if d.kind() != DecisionKind::Approve {
            return settle(&mut d);
        }
        let key = d.approval_key().unwrap_or_default().to_owned();
        let message = format!(
            "Approve the call of `{}` with arguments {}? Policy: {}",
            call.tool(),
            call.arguments().map(Value::to_string).unwrap_or_else(|| "{}".to_owned()),
            d.message()
        );
        match approval_path(context) {
            ApprovalPath::None => Outcome::Answer(
                refusal(&d, " This client cannot ask a human (it does not support elicitation).")
                    .into(),
            ),
            ApprovalPath::InputRequired => {
                let mut requests = InputRequests::new();
                requests.insert(
                    APPROVAL_INPUT.to_owned(),
                    InputRequest::Elicitation(ElicitRequest::new(elicitation(message))),
                );
                Outcome::Answer(InputRequiredResult::new(Some(requests), Some(key)).into())
            }
            ApprovalPath::Request => {
                match context.peer.create_elicitation(elicitation(message)).await {
                    Ok(result) if accepted(&result) => {
                        let mut again =
                            self.evaluator.evaluate_async(&call.with_approval_key(&key)).await;
                        self.audit(call, &again);
                        settle(&mut again)
                    }
                    Ok(_) => Outcome::Answer(declined(call.tool()).into()),
                    Err(e) => Outcome::Answer(
                        refusal(&d, &format!(" Asking the human failed: {e}.")).into(),
                    ),
                }
            }
        }
    }

    fn audit(&self, call: &ToolCall<'_>, d: &Decision<'_>) {
        // Nothing to build when nobody listens.
        let enabled = if d.is_allowed() {
            tracing::enabled!(target: "mcp_policy::audit", tracing::Level::INFO)
        } else {
            tracing::enabled!(target: "mcp_policy::audit", tracing::Level::WARN)
        };
        if !enabled {
            return;
        }
        let keys: Vec<&str> = call
            .arguments()
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let policy = self.evaluator.policy();
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "mcp_policy::audit",
                    $level,
                    tool = call.tool(),
                    grant = call.grant(),
                    session = call.session().unwrap_or(""),
                    decision = d.kind().as_str(),
                    rule = %d.rule(),
                    policy = policy.digest(),
                    argument_keys = ?keys,
                    "{}",
                    d.message()
                )
            };
        }
        if d.is_allowed() {
            event!(tracing::Level::INFO);
        } else {
            event!(tracing::Level::WARN);
        }
    }
}

/// Allow → dispatch (with the receipt of its charge); anything else → the refusal result.
fn settle(d: &mut Decision<'_>) -> Outcome {
    if d.is_allowed() {
        Outcome::Dispatch(d.take_receipt())
    } else {
        Outcome::Answer(refusal(d, "").into())
    }
}

/// The `isError` result of a decision that is not allow: its client text, and the decision JSON
/// as structured content.
pub fn refusal(d: &Decision<'_>, extra: &str) -> CallToolResult {
    let text = format!("{}{extra}", d.client_text().unwrap_or_else(|| d.message().to_owned()));
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(d.to_json());
    result
}

fn declined(tool: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "Approval declined: a human did not approve this call of `{tool}`. Do not retry it unless the human asks."
    ))]);
    result.structured_content = Some(serde_json::json!({
        "decision": "deny",
        "tool": tool,
        "rule": "",
        "message": "the human declined to approve this call",
    }));
    result
}

/// The elicitation that asks a human to approve a call.
fn elicitation(message: String) -> ElicitRequestParams {
    let schema = ElicitationSchema::builder()
        .required_property(
            "approve",
            PrimitiveSchemaDefinition::Boolean(BooleanSchema::new().title("Approve this call")),
        )
        .build()
        .unwrap_or_else(|_| ElicitationSchema::new(Default::default()));
    ElicitRequestParams::FormElicitationParams { meta: None, message, requested_schema: schema }
}

/// Whether the human accepted, with `approve: true`.
fn accepted(result: &ElicitResult) -> bool {
    result.action == ElicitationAction::Accept
        && result.content.as_ref().and_then(|c| c.get("approve")).and_then(Value::as_bool)
            == Some(true)
}

/// The human's answer carried by an `input_required` retry.
enum Answer {
    Approved(String),
    Declined,
}

fn approval_answer(request: &mut CallToolRequestParams) -> Option<Answer> {
    let response = request.input_responses.as_mut()?.remove(APPROVAL_INPUT)?;
    let key = request.request_state.take();
    let result: Option<ElicitResult> = serde_json::from_value(response).ok();
    match (result, key) {
        (Some(r), Some(key)) if accepted(&r) => Some(Answer::Approved(key)),
        _ => Some(Answer::Declined),
    }
}

/// The code of `docs/embedding.md`, compiled with the crate's doctests so that the guide cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
struct EmbeddingGuide;
