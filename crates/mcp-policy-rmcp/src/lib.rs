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
//!   whose text the model can act on and whose structured content is the decision JSON (none for
//!   a tool with an `outputSchema`); a call that needs approval asks the human through
//!   elicitation.
//!
//! A server written with rmcp's `#[tool_router]` / `#[tool_handler]` macros is guarded with
//! [`PolicyGuard::router`] in one attribute: `#[tool_handler(router =
//! self.guard.router(&self.tool_router))]` (see [`GuardedRouter`]).
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
//! let guard = PolicyGuard::new(Arc::new(Evaluator::new(policy)))
//!     .with_fixed_grant("stdio-user")
//!     .with_tools(&my_tools());
//! let server = MyServer { guard };
//! # Ok(()) }
//! ```
//!
//! ## Charges and refunds
//!
//! An allowed call is charged before it runs. Its units come back only when the call did **not**
//! happen: the dispatch returned [`DispatchError::NotDispatched`] (transport closed, upstream
//! unreachable), or the client cancelled the request before it was dispatched. A tool that ran
//! and failed (a result with `is_error: true`, or any other error of the dispatch) keeps its
//! charge: otherwise an agent could guess names, PINs or secrets without limit, or repeat a
//! statement that acts and then errors. There is no refund-on-error switch.
//!
//! ## Approvals and protocol versions
//!
//! When the policy answers **approve**, the guard asks the human, depending on what the client
//! negotiated:
//!
//! - protocol versions up to `2025-11-25` (with an `initialize` handshake), client declaring the
//!   `elicitation` capability: a server-to-client `elicitation/create` request during the call;
//!   a `notifications/cancelled` for the call ends the wait and nothing runs, whatever the human
//!   answers later; an elicitation that fails denies the call;
//! - protocol `2026-07-28` and later (no server-to-client requests), client declaring
//!   `elicitation`: an `input_required` result (SEP-2322) carrying the elicitation; the client
//!   answers by calling the tool again with `inputResponses`. Its `requestState` is a random,
//!   single-use token that the guard maps, server-side, to the approval; the token is bound to
//!   the tool, the grant and the session it was issued to, and the approval key itself never
//!   leaves the server;
//! - a client without elicitation: an `isError` result that names the tool and why a human must
//!   approve it.
//!
//! `inputResponses` for the guard's approval count only on a session whose protocol has them
//! (`2026-07-28` and later) and whose client declared elicitation: elsewhere they are ignored
//! and the call is decided afresh. A refusal never carries the approval key, in its text or its
//! structured content.
//!
//! An accepted approval lets exactly that call through once (steps 1 to 5 and the limits still
//! apply); a declined, cancelled or failed one denies it.
//!
//! ## Audit
//!
//! Every decision is one `tracing` event at target `mcp_policy::audit` (level `INFO` for allow,
//! `WARN` otherwise) whose message is the decision's message and whose fields are `tool`,
//! `grant`, `session`, `decision`, `rule`, `policy` (the digest) and `argument_keys` (the
//! arguments' top-level keys, never their values). What the human answered (declined, failed,
//! cancelled) is one more `WARN` event of the same shape.
//!
//! ## The guide and the examples
//!
//! [`docs/embedding.md`] walks through a `#[tool_router]` server over stdio and over streamable
//! HTTP with bearer tokens (where the verified identity lives, and why one guard serves every
//! session), approvals and audit events. Runnable servers: [`examples/guarded-server`] (stdio)
//! and [`examples/http-server`] (streamable HTTP, JWT identity).
//!
//! [`docs/embedding.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/embedding.md
//! [`examples/guarded-server`]: https://github.com/mcp-policy/mcp-policy/tree/main/examples/guarded-server
//! [`examples/http-server`]: https://github.com/mcp-policy/mcp-policy/tree/main/examples/http-server

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_policy::{
    AsyncCounterStore, ChargeReceipt, Decision, DecisionKind, Evaluator, MemoryStore, ToolCall,
};
use parking_lot::Mutex;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
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

/// How many approval rounds (`input_required` results) one grant may have outstanding; past
/// this, that grant's oldest round is forgotten (never another grant's).
pub const MAX_PENDING_ROUNDS_PER_GRANT: usize = 1_000;

/// How long the client has to come back with the human's answer to an `input_required` round.
pub const PENDING_ROUND_TTL: Duration = Duration::from_secs(3600);

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

/// Why a dispatch produced no tool result, which decides whether the call's units come back.
///
/// A dispatch closure can use `?` on anything that returns [`ErrorData`]: it converts to
/// [`DispatchError::Failed`], which keeps the charge (the safe reading of an error whose cause
/// is not known). Say [`DispatchError::NotDispatched`] only when the upstream call certainly
/// did not happen.
#[derive(Debug, Clone)]
pub enum DispatchError {
    /// The call never reached the tool (transport closed, upstream unreachable, no such route):
    /// its units are returned. The error is sent to the client.
    NotDispatched(ErrorData),
    /// The tool ran, or may have run, and failed: its units stay charged. The error is sent to
    /// the client.
    Failed(ErrorData),
}

impl DispatchError {
    /// The JSON-RPC error sent to the client.
    pub fn error_data(&self) -> &ErrorData {
        match self {
            DispatchError::NotDispatched(e) | DispatchError::Failed(e) => e,
        }
    }

    /// Whether the call's units are returned.
    pub fn refunds(&self) -> bool {
        matches!(self, DispatchError::NotDispatched(_))
    }

    fn into_error_data(self) -> ErrorData {
        match self {
            DispatchError::NotDispatched(e) | DispatchError::Failed(e) => e,
        }
    }
}

impl From<ErrorData> for DispatchError {
    /// An error whose cause is not known: the units stay charged.
    fn from(e: ErrorData) -> Self {
        DispatchError::Failed(e)
    }
}

/// Decides every tool call of an rmcp server against a policy.
pub struct PolicyGuard<S = MemoryStore> {
    evaluator: Arc<Evaluator<S>>,
    identity: Arc<IdentityFn>,
    /// Tools whose refusals carry no structured content (they declare an `outputSchema`).
    output_schemas: Arc<HashSet<String>>,
    /// Approval rounds handed to clients, by their `requestState` token.
    rounds: Arc<PendingRounds>,
}

impl<S> Clone for PolicyGuard<S> {
    fn clone(&self) -> Self {
        PolicyGuard {
            evaluator: self.evaluator.clone(),
            identity: self.identity.clone(),
            output_schemas: self.output_schemas.clone(),
            rounds: self.rounds.clone(),
        }
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

/// A value of type `T` that an HTTP layer put into the request's extensions, when the transport
/// is streamable HTTP: rmcp keeps the HTTP request's [`http::request::Parts`] in the request
/// context, and this reads `T` from their extensions. Use it for the identity your
/// authentication middleware verified (a typed value no client can forge with a header).
///
/// ```no_run
/// # use mcp_policy_rmcp::{http_extension, http_header, Identity, PolicyGuard};
/// #[derive(Clone)]
/// struct Caller { subject: String }
///
/// # fn f(guard: PolicyGuard) -> PolicyGuard {
/// guard.with_identity(|context| Identity {
///     grant: http_extension::<Caller>(context).map(|c| c.subject).unwrap_or_default(),
///     session: http_header(context, "mcp-session-id"),
///     context: None,
/// })
/// # }
/// ```
pub fn http_extension<T: Clone + Send + Sync + 'static>(
    context: &RequestContext<RoleServer>,
) -> Option<T> {
    context.extensions.get::<http::request::Parts>()?.extensions.get::<T>().cloned()
}

impl<S> PolicyGuard<S> {
    /// A guard for `evaluator`. The grant is `""` (every caller shares one grant) and the session
    /// is the `mcp-session-id` HTTP header when there is one, until
    /// [`with_fixed_grant`](PolicyGuard::with_fixed_grant) or
    /// [`with_identity`](PolicyGuard::with_identity) says otherwise.
    ///
    /// Build the guard once and share it (it is cheap to clone): every clone shares the
    /// evaluator's counters and the pending approval rounds.
    pub fn new(evaluator: Arc<Evaluator<S>>) -> Self {
        PolicyGuard {
            evaluator,
            identity: Arc::new(|context: &RequestContext<RoleServer>| Identity {
                grant: String::new(),
                session: http_header(context, "mcp-session-id"),
                context: None,
            }),
            output_schemas: Arc::new(HashSet::new()),
            rounds: Arc::new(PendingRounds::default()),
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

    /// The server's tools, so that refusals of tools that declare an `outputSchema` carry no
    /// `structuredContent`: clients (the TypeScript SDK v1) validate it against the schema even
    /// when `isError` is true and would show the model a protocol error instead of the refusal.
    /// Not needed with [`PolicyGuard::router`], which reads the router's tools.
    pub fn with_tools(mut self, tools: &[Tool]) -> Self {
        self.output_schemas = Arc::new(
            tools
                .iter()
                .filter(|t| t.output_schema.is_some())
                .map(|t| t.name.to_string())
                .collect(),
        );
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

    /// A view of `router` through this guard, for `#[tool_handler(router = ...)]`: it lists the
    /// tools the policy lets a client see and guards every call, keeping every response kind of
    /// the router (complete, `input_required`, task).
    pub fn router<'a, T>(&'a self, router: &'a ToolRouter<T>) -> GuardedRouter<'a, T, S> {
        GuardedRouter { guard: self, router }
    }
}

/// A [`ToolRouter`] seen through a [`PolicyGuard`], with the three methods rmcp's
/// `#[tool_handler]` macro calls on its `router` (`call`, `list_all`, `get`):
///
/// ```no_run
/// use mcp_policy_rmcp::PolicyGuard;
/// use rmcp::handler::server::router::tool::ToolRouter;
/// use rmcp::{ServerHandler, tool, tool_handler, tool_router};
///
/// #[derive(Clone)]
/// struct MyServer { guard: PolicyGuard, tool_router: ToolRouter<Self> }
///
/// #[tool_router]
/// impl MyServer {
///     #[tool(description = "List the clusters")]
///     async fn list_clusters(&self) -> String { "etl, adhoc".to_owned() }
/// }
///
/// #[tool_handler(router = self.guard.router(&self.tool_router))]
/// impl ServerHandler for MyServer {}
/// ```
///
/// `examples/guarded-server` is a complete server in this style.
pub struct GuardedRouter<'a, T, S = MemoryStore> {
    guard: &'a PolicyGuard<S>,
    router: &'a ToolRouter<T>,
}

impl<T, S> std::fmt::Debug for GuardedRouter<'_, T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedRouter").field("guard", self.guard).finish_non_exhaustive()
    }
}

impl<'a, T, S> GuardedRouter<'a, T, S>
where
    T: Send + Sync + 'static,
    S: AsyncCounterStore,
{
    /// The router's tools that the policy lets a client see.
    pub fn list_all(&self) -> Vec<Tool> {
        self.guard.filter_tools(self.router.list_all())
    }

    /// The router's tool `name`, if the policy lets a client see it (a hidden tool is as
    /// unknown here as in `tools/list`).
    pub fn get(&self, name: &str) -> Option<&'a Tool> {
        let router: &'a ToolRouter<T> = self.router;
        router.get(name).filter(|_| self.guard.evaluator.policy().is_visible(name))
    }

    /// Decides the call and, when it may run, hands it to the router. A call for which the
    /// router has no route gets its units back; any other error of the router keeps them.
    pub async fn call(
        &self,
        context: ToolCallContext<'_, T>,
    ) -> Result<CallToolResponse, ErrorData> {
        let service = context.service;
        let mut request = CallToolRequestParams::new(context.name);
        request.arguments = context.arguments;
        request.input_responses = context.input_responses;
        request.request_state = context.request_state;
        let structured = self.router.get(&request.name).is_none_or(|t| t.output_schema.is_none());
        let router = self.router;
        self.guard
            .guard_call(
                request,
                context.request_context,
                structured,
                |request, context| async move {
                    let routed = router.get(&request.name).is_some();
                    match router.call(ToolCallContext::new(service, request, context)).await {
                        Ok(response) => Ok(response),
                        Err(e) if !routed => Err(DispatchError::NotDispatched(e)),
                        Err(e) => Err(DispatchError::Failed(e)),
                    }
                },
            )
            .await
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

fn client_elicits(context: &RequestContext<RoleServer>) -> bool {
    context.client_capabilities().is_some_and(|c| c.elicitation.is_some())
}

/// Whether the request's protocol has `input_required` rounds (`inputResponses`,
/// `requestState`): 2026-07-28 and later, the versions without `initialize`.
fn has_input_rounds(context: &RequestContext<RoleServer>) -> bool {
    context.protocol_version().is_some_and(|v| !v.has_initialize())
}

fn approval_path(context: &RequestContext<RoleServer>) -> ApprovalPath {
    if !client_elicits(context) {
        ApprovalPath::None
    } else if has_input_rounds(context) {
        ApprovalPath::InputRequired
    } else {
        ApprovalPath::Request
    }
}

/// What the guard does with a call.
enum Outcome {
    Dispatch(Option<ChargeReceipt>),
    Answer(CallToolResponse),
}

/// The human's answer carried by an `input_required` retry.
enum Answer {
    /// Accepted, for the pending round whose approval key this is.
    Approved(String),
    /// Declined or cancelled by the human, or not an answer the guard understands.
    Declined,
    /// A `requestState` that no pending round of this tool, grant and session has.
    Unknown,
}

impl<S: AsyncCounterStore> PolicyGuard<S> {
    /// Decides `request` and either runs `dispatch` (allowed) or answers for it: an `isError`
    /// result for deny and limit, an approval round for approve.
    ///
    /// Whatever `dispatch` answers (a result, `input_required`, a task) goes to the client as it
    /// is. The call's units come back only when it was not dispatched: `dispatch` returned
    /// [`DispatchError::NotDispatched`], or the client cancelled the request before dispatch. A
    /// result with `is_error: true` means the tool ran: it keeps its charge.
    pub async fn call_tool<F, Fut, R>(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        dispatch: F,
    ) -> Result<CallToolResponse, ErrorData>
    where
        F: FnOnce(CallToolRequestParams, RequestContext<RoleServer>) -> Fut,
        Fut: Future<Output = Result<R, DispatchError>>,
        R: Into<CallToolResponse>,
    {
        let structured = !self.output_schemas.contains(request.name.as_ref());
        self.guard_call(request, context, structured, dispatch).await
    }

    async fn guard_call<F, Fut, R>(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        structured: bool,
        dispatch: F,
    ) -> Result<CallToolResponse, ErrorData>
    where
        F: FnOnce(CallToolRequestParams, RequestContext<RoleServer>) -> Fut,
        Fut: Future<Output = Result<R, DispatchError>>,
        R: Into<CallToolResponse>,
    {
        let identity = (self.identity)(&context);
        let tool = request.name.to_string();
        let had_arguments = request.arguments.is_some();
        let arguments = Value::Object(request.arguments.take().unwrap_or_default());
        let answer = self.approval_answer(&mut request, &context, &identity, &tool);
        let outcome = {
            let mut call = ToolCall::new(&tool)
                .with_arguments(&arguments)
                .with_grant(&identity.grant)
                .with_optional_session(identity.session.as_deref());
            if let Some(c) = &identity.context {
                call = call.with_context(c);
            }
            self.decide(&call, &context, answer, structured).await
        };
        let receipt = match outcome {
            Outcome::Answer(response) => return Ok(response),
            Outcome::Dispatch(receipt) => receipt,
        };
        if context.ct.is_cancelled() {
            // Cancelled (or the connection closed) before dispatch: the call does not happen.
            self.refund(&tool, receipt).await;
            self.audit_event(
                &tool,
                &identity,
                &arguments,
                "deny",
                "",
                "the client cancelled the call before it ran",
            );
            return Ok(cancelled(&tool, structured).into());
        }
        if had_arguments && let Value::Object(map) = arguments {
            request.arguments = Some(map);
        }
        match dispatch(request, context).await {
            Ok(response) => Ok(response.into()),
            Err(e) => {
                if e.refunds() {
                    self.refund(&tool, receipt).await;
                }
                Err(e.into_error_data())
            }
        }
    }

    async fn refund(&self, tool: &str, receipt: Option<ChargeReceipt>) {
        if let Some(receipt) = receipt
            && let Err(e) = self.evaluator.rollback_receipt_async(receipt).await
        {
            tracing::warn!(
                target: "mcp_policy::audit",
                tool = %tool,
                error = %e,
                "could not return the units of a call that was not dispatched"
            );
        }
    }

    /// Takes the guard's approval answer out of `request`, if it carries one that counts.
    fn approval_answer(
        &self,
        request: &mut CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        identity: &Identity,
        tool: &str,
    ) -> Option<Answer> {
        let responses = request.input_responses.as_mut()?;
        let response = responses.remove(APPROVAL_INPUT)?;
        if responses.is_empty() {
            request.input_responses = None;
        }
        // The guard's round owns `requestState` when the guard's input is answered.
        let token = request.request_state.take();
        // Only a session whose protocol has input rounds and whose client can ask a human may
        // answer one; elsewhere the answer is ignored and the call decided afresh.
        if !(has_input_rounds(context) && client_elicits(context)) {
            return None;
        }
        let Some(key) = token.and_then(|t| self.rounds.redeem(&t, tool, identity)) else {
            return Some(Answer::Unknown);
        };
        let result: Option<ElicitResult> = serde_json::from_value(response).ok();
        match result {
            Some(r) if accepted(&r) => Some(Answer::Approved(key)),
            _ => Some(Answer::Declined),
        }
    }

    async fn decide(
        &self,
        call: &ToolCall<'_>,
        context: &RequestContext<RoleServer>,
        answer: Option<Answer>,
        structured: bool,
    ) -> Outcome {
        // A call coming back with the human's answer (input_required round).
        if let Some(answer) = answer {
            return match answer {
                Answer::Approved(key) => {
                    let mut d = self.evaluator.evaluate_async(&call.with_approval_key(&key)).await;
                    self.audit(call, &d);
                    settle(&mut d, structured)
                }
                Answer::Declined => {
                    self.audit_human(call, "", "the human declined to approve this call");
                    Outcome::Answer(declined(call.tool(), structured).into())
                }
                Answer::Unknown => {
                    let message = "the approval answer matches no pending approval of this call";
                    self.audit_human(call, "", message);
                    Outcome::Answer(human_refusal(call.tool(), "", message, structured).into())
                }
            };
        }
        let mut d = self.evaluator.evaluate_async(call).await;
        self.audit(call, &d);
        if d.kind() != DecisionKind::Approve || d.is_monitored() {
            return settle(&mut d, structured);
        }
        let Some(key) = d.approval_key().map(str::to_owned) else {
            return settle(&mut d, structured);
        };
        let message = format!(
            "Approve the call of `{}` with arguments {}? Policy: {}",
            call.tool(),
            call.arguments().map(Value::to_string).unwrap_or_else(|| "{}".to_owned()),
            d.message()
        );
        match approval_path(context) {
            ApprovalPath::None => Outcome::Answer(
                refusal_with(
                    &d,
                    " This client cannot ask a human (it does not support elicitation).",
                    structured,
                )
                .into(),
            ),
            ApprovalPath::InputRequired => {
                let identity = Identity {
                    grant: call.grant().to_owned(),
                    session: call.session().map(str::to_owned),
                    context: None,
                };
                let Some(token) = self.rounds.issue(key, call.tool(), &identity) else {
                    let message = "the server could not open an approval round";
                    self.audit_human(call, &d.rule(), message);
                    return Outcome::Answer(
                        human_refusal(call.tool(), &d.rule(), message, structured).into(),
                    );
                };
                let mut requests = InputRequests::new();
                requests.insert(
                    APPROVAL_INPUT.to_owned(),
                    InputRequest::Elicitation(ElicitRequest::new(elicitation(message))),
                );
                Outcome::Answer(InputRequiredResult::new(Some(requests), Some(token)).into())
            }
            ApprovalPath::Request => {
                let asked = tokio::select! {
                    biased;
                    () = context.ct.cancelled() => None,
                    r = context.peer.create_elicitation(elicitation(message)) => Some(r),
                };
                match asked {
                    None => {
                        let message = "the client cancelled the call while a human was asked";
                        self.audit_human(call, &d.rule(), message);
                        Outcome::Answer(cancelled(call.tool(), structured).into())
                    }
                    Some(Ok(result)) if accepted(&result) => {
                        let mut again =
                            self.evaluator.evaluate_async(&call.with_approval_key(&key)).await;
                        self.audit(call, &again);
                        settle(&mut again, structured)
                    }
                    Some(Ok(_)) => {
                        self.audit_human(
                            call,
                            &d.rule(),
                            "the human declined to approve this call",
                        );
                        Outcome::Answer(declined(call.tool(), structured).into())
                    }
                    Some(Err(e)) => {
                        let message =
                            format!("asking the human failed ({e}), so the call is denied");
                        self.audit_human(call, &d.rule(), &message);
                        Outcome::Answer(
                            human_refusal(call.tool(), &d.rule(), &message, structured).into(),
                        )
                    }
                }
            }
        }
    }

    fn audit(&self, call: &ToolCall<'_>, d: &Decision<'_>) {
        let level = if d.is_allowed() { tracing::Level::INFO } else { tracing::Level::WARN };
        self.audit_at(level, call, d.kind().as_str(), &d.rule(), d.message());
    }

    /// What came of asking the human (or of a client's answer): a deny.
    fn audit_human(&self, call: &ToolCall<'_>, rule: &str, message: &str) {
        self.audit_at(tracing::Level::WARN, call, "deny", rule, message);
    }

    fn audit_event(
        &self,
        tool: &str,
        identity: &Identity,
        arguments: &Value,
        decision: &str,
        rule: &str,
        message: &str,
    ) {
        let call = ToolCall::new(tool)
            .with_arguments(arguments)
            .with_grant(&identity.grant)
            .with_optional_session(identity.session.as_deref());
        self.audit_at(tracing::Level::WARN, &call, decision, rule, message);
    }

    fn audit_at(
        &self,
        level: tracing::Level,
        call: &ToolCall<'_>,
        decision: &str,
        rule: &str,
        message: &str,
    ) {
        // Nothing to build when nobody listens.
        let enabled = if level == tracing::Level::INFO {
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
                    decision = decision,
                    rule = %rule,
                    policy = policy.digest(),
                    argument_keys = ?keys,
                    "{}",
                    message
                )
            };
        }
        if level == tracing::Level::INFO {
            event!(tracing::Level::INFO);
        } else {
            event!(tracing::Level::WARN);
        }
    }
}

/// Allow (or any decision in monitor mode) → dispatch (with the receipt of its charge);
/// anything else → the refusal result.
fn settle(d: &mut Decision<'_>, structured: bool) -> Outcome {
    if d.should_dispatch() {
        Outcome::Dispatch(d.take_receipt())
    } else {
        Outcome::Answer(refusal_with(d, "", structured).into())
    }
}

/// The `isError` result of a decision that is not allow: its client text, and
/// [`Decision::client_json`] as structured content (no approval key: a secret of the server,
/// with which a client could approve its own call; a hidden tool's rule shown as `/default`).
///
/// For a tool that declares an `outputSchema`, use the text alone (`structured_content: None`):
/// some clients validate structured content against the schema even when `isError` is true.
pub fn refusal(d: &Decision<'_>, extra: &str) -> CallToolResult {
    refusal_with(d, extra, true)
}

fn refusal_with(d: &Decision<'_>, extra: &str, structured: bool) -> CallToolResult {
    let text = format!("{}{extra}", d.client_text().unwrap_or_else(|| d.message().to_owned()));
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    if structured {
        result.structured_content = Some(d.client_json());
    }
    result
}

/// A deny that came from the approval round rather than from the policy.
fn human_refusal(tool: &str, rule: &str, message: &str, structured: bool) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "Denied: {message}. Do not retry this call unless the human asks."
    ))]);
    if structured {
        result.structured_content = Some(serde_json::json!({
            "decision": "deny",
            "tool": tool,
            "rule": rule,
            "message": message,
        }));
    }
    result
}

fn declined(tool: &str, structured: bool) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "Approval declined: a human did not approve this call of `{tool}`. Do not retry it unless the human asks."
    ))]);
    if structured {
        result.structured_content = Some(serde_json::json!({
            "decision": "deny",
            "tool": tool,
            "rule": "",
            "message": "the human declined to approve this call",
        }));
    }
    result
}

fn cancelled(tool: &str, structured: bool) -> CallToolResult {
    human_refusal(
        tool,
        "",
        "the client cancelled this call before it ran; nothing was done",
        structured,
    )
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

/// Approval rounds handed to clients as `input_required` results: the random token the client
/// echoes in `requestState`, mapped to the secret approval key, which never leaves the server.
struct PendingRounds {
    inner: Mutex<Rounds>,
    ttl: Duration,
}

impl Default for PendingRounds {
    fn default() -> Self {
        PendingRounds { inner: Mutex::default(), ttl: PENDING_ROUND_TTL }
    }
}

#[derive(Default)]
struct Rounds {
    by_token: HashMap<String, Round>,
    /// Each grant's tokens, oldest first: the per-grant bound evicts only that grant's rounds.
    by_grant: HashMap<String, VecDeque<String>>,
}

struct Round {
    key: String,
    tool: String,
    grant: String,
    session: Option<String>,
    issued: Instant,
}

impl PendingRounds {
    /// A new round for the approval `key` of `tool`, bound to the identity's grant and session;
    /// `None` when no random token could be drawn.
    fn issue(&self, key: String, tool: &str, identity: &Identity) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut rounds = self.inner.lock();
        let Rounds { by_token, by_grant } = &mut *rounds;
        let queue = by_grant.entry(identity.grant.clone()).or_default();
        // Forget what was redeemed or has expired, then make room within this grant alone.
        while let Some(front) = queue.front() {
            match by_token.get(front) {
                Some(r) if r.issued.elapsed() < self.ttl => break,
                _ => {
                    if let Some(t) = queue.pop_front() {
                        by_token.remove(&t);
                    }
                }
            }
        }
        while queue.len() >= MAX_PENDING_ROUNDS_PER_GRANT {
            if let Some(t) = queue.pop_front() {
                by_token.remove(&t);
            }
        }
        queue.push_back(token.clone());
        by_token.insert(
            token.clone(),
            Round {
                key,
                tool: tool.to_owned(),
                grant: identity.grant.clone(),
                session: identity.session.clone(),
                issued: Instant::now(),
            },
        );
        Some(token)
    }

    /// The approval key of the round `token`, once, if it was issued for this tool, grant and
    /// session and has not expired.
    fn redeem(&self, token: &str, tool: &str, identity: &Identity) -> Option<String> {
        let mut rounds = self.inner.lock();
        let round = rounds.by_token.get(token)?;
        if round.tool != tool || round.grant != identity.grant || round.session != identity.session
        {
            return None;
        }
        let round = rounds.by_token.remove(token)?;
        if let Some(queue) = rounds.by_grant.get_mut(&round.grant) {
            queue.retain(|t| t != token);
            if queue.is_empty() {
                rounds.by_grant.remove(&round.grant);
            }
        }
        (round.issued.elapsed() < self.ttl).then_some(round.key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn who(grant: &str, session: Option<&str>) -> Identity {
        Identity { grant: grant.into(), session: session.map(Into::into), context: None }
    }

    #[test]
    fn a_round_is_redeemed_once_and_only_by_its_tool_grant_and_session() {
        let rounds = PendingRounds::default();
        let token = rounds.issue("k1".into(), "t", &who("g", Some("s"))).unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, "k1");
        assert_eq!(rounds.redeem(&token, "other", &who("g", Some("s"))), None);
        assert_eq!(rounds.redeem(&token, "t", &who("h", Some("s"))), None);
        assert_eq!(rounds.redeem(&token, "t", &who("g", None)), None);
        assert_eq!(rounds.redeem("guess", "t", &who("g", Some("s"))), None);
        assert_eq!(rounds.redeem(&token, "t", &who("g", Some("s"))).as_deref(), Some("k1"));
        assert_eq!(rounds.redeem(&token, "t", &who("g", Some("s"))), None, "single use");
        assert!(rounds.inner.lock().by_grant.is_empty());
    }

    #[test]
    fn an_expired_round_is_refused_and_forgotten() {
        let rounds = PendingRounds { inner: Mutex::default(), ttl: Duration::ZERO };
        let token = rounds.issue("k".into(), "t", &who("g", None)).unwrap();
        assert_eq!(rounds.redeem(&token, "t", &who("g", None)), None);
        assert!(rounds.inner.lock().by_token.is_empty());
        // Expired rounds are swept when the grant opens another.
        rounds.issue("k2".into(), "t", &who("g", None)).unwrap();
        rounds.issue("k3".into(), "t", &who("g", None)).unwrap();
        assert_eq!(rounds.inner.lock().by_token.len(), 1);
        assert_eq!(PendingRounds::default().ttl, PENDING_ROUND_TTL);
    }

    #[test]
    fn one_grant_flooding_rounds_never_evicts_another_grants_round() {
        let rounds = PendingRounds::default();
        let victim = rounds.issue("victim".into(), "t", &who("a", None)).unwrap();
        let first = rounds.issue("first".into(), "t", &who("b", None)).unwrap();
        for i in 0..MAX_PENDING_ROUNDS_PER_GRANT + 10 {
            rounds.issue(format!("k{i}"), "t", &who("b", None)).unwrap();
        }
        assert_eq!(rounds.inner.lock().by_grant["b"].len(), MAX_PENDING_ROUNDS_PER_GRANT);
        assert_eq!(rounds.redeem(&first, "t", &who("b", None)), None, "b's oldest went");
        assert_eq!(rounds.redeem(&victim, "t", &who("a", None)).as_deref(), Some("victim"));
    }

    #[test]
    fn a_refusal_never_carries_the_approval_key() {
        let policy: mcp_policy::Policy = r#"{"version": "1", "default": "deny",
            "tools": {"t": {"approve_if": [{"conditions": [{"path": "args.x", "op": "exists"}],
                                             "reason": "needs a human"}]}}}"#
            .parse()
            .unwrap();
        let evaluator = Evaluator::new(policy);
        let args = serde_json::json!({"x": 1});
        let d = evaluator.evaluate(&ToolCall::new("t").with_arguments(&args));
        let key = d.approval_key().unwrap().to_owned();
        for r in [refusal(&d, ""), refusal_with(&d, "", false)] {
            assert!(!serde_json::to_string(&r).unwrap().contains(&key));
        }
        assert_eq!(refusal(&d, "").structured_content.unwrap()["decision"], "approve");
        assert!(refusal_with(&d, "", false).structured_content.is_none());
    }
}

/// The code of [`docs/embedding.md`], compiled with the crate's doctests so that the guide cannot
/// drift from the API.
///
/// [`docs/embedding.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/embedding.md
#[cfg(doctest)]
#[doc = include_str!("../embedding.md")]
struct EmbeddingGuide;
