//! An MCP server over streamable HTTP, guarded by an mcp-policy policy, whose callers are named by
//! a verified bearer token (an OAuth-style HS256 JWT).
//!
//! The pieces, in the order a request meets them:
//!
//! 1. [`authenticate`], an axum middleware, verifies `Authorization: Bearer TOKEN` with a
//!    [`TokenVerifier`] (signature, `exp`, `aud`) and inserts a typed [`Caller`] into the HTTP
//!    request's extensions; without a valid token it answers `401` with a `WWW-Authenticate:
//!    Bearer` challenge, before MCP starts.
//! 2. rmcp's [`StreamableHttpService`] keeps the HTTP request's `http::request::Parts` (their
//!    extensions included) in the `extensions` of each MCP request's `RequestContext`.
//! 3. The [`guard`] reads the [`Caller`] from there with [`http_extension`]: the grant is the
//!    token's subject and the token's scopes are the policy's `context.scopes`. No header is read for the identity:
//!    a client can send any header it likes, but only server code can put a `Caller` into the
//!    request's extensions. A request that reaches the guard without one (the layer not
//!    mounted) has the grant `""`, which the example policy refuses.
//! 4. The tools of [`TableServer`] (written with `#[tool_router]`, guarded with
//!    `#[tool_handler(router = self.guard.router(&self.tool_router))]`) run only for allowed
//!    calls.
//!
//! The guard is built once, in [`start`], and the session factory clones the server that holds
//! it: every session shares the evaluator's counters, so a limit counts per grant across all of a
//! caller's sessions. A guard built inside the factory would give every session counters of its
//! own, and a client could reset its quota by opening a new session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::{Identity, PolicyGuard, http_extension, http_header};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The audience (`aud`) a token must name to be accepted by this server.
pub const AUDIENCE: &str = "mcp-policy-http-example";

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Who is calling, as the bearer token says after [`TokenVerifier::verify`] checked it.
///
/// [`authenticate`] puts it into the HTTP request's extensions, which no client can write to;
/// the [`guard`] reads it from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The grant the policy sees: the token's `sub`.
    pub grant: String,
    /// The token's scopes (its `scope` claim, split on spaces), the policy's `context.scopes`.
    pub scopes: Vec<String>,
}

/// The claims of a token this server accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the caller's grant.
    pub sub: String,
    /// The audience: must be [`AUDIENCE`].
    pub aud: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Space-separated OAuth scopes, for example `"tables:read tables:export"`.
    #[serde(default)]
    pub scope: String,
}

impl Claims {
    /// Claims for `subject` with `scopes`, for [`AUDIENCE`], expiring `valid_for` from now.
    pub fn new(subject: &str, scopes: &[&str], valid_for: Duration) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Claims {
            sub: subject.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: (now + valid_for).as_secs(),
            scope: scopes.join(" "),
        }
    }
}

/// Signs `claims` as an HS256 JWT with `secret` (what an authorization server would do; the
/// example's `token` command and its tests use it).
///
/// # Errors
///
/// When the claims cannot be encoded.
pub fn sign(secret: &[u8], claims: &Claims) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .map_err(|e| format!("cannot sign the token: {e}"))
}

/// Verifies HS256 bearer tokens: the signature, `exp` (required), `nbf` when present, and `aud`
/// (required, [`AUDIENCE`]).
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier of tokens signed with `secret`.
    ///
    /// # Errors
    ///
    /// When `secret` is shorter than [`MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the token secret is {} bytes long: use at least {MIN_SECRET_BYTES} random bytes",
                secret.len()
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        Ok(TokenVerifier { key: DecodingKey::from_secret(secret), validation })
    }

    /// The caller `token` names, or why the token is refused.
    ///
    /// # Errors
    ///
    /// A bad signature, an expired token, another audience, or a missing or empty `sub`.
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err("invalid token: the claim `sub` is empty".to_owned());
        }
        let scopes = claims.scope.split_whitespace().map(str::to_owned).collect();
        Ok(Caller { grant: claims.sub, scopes })
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A `401` with the RFC 6750 challenge: `error="invalid_token"` when a token was sent.
fn unauthorized(problem: &str, token_sent: bool) -> Response {
    let challenge = if token_sent {
        r#"Bearer realm="mcp", error="invalid_token""#
    } else {
        r#"Bearer realm="mcp""#
    };
    let mut response = (StatusCode::UNAUTHORIZED, format!("{problem}\n")).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// The authentication layer (`axum::middleware::from_fn_with_state`): verifies the bearer
/// token and inserts the [`Caller`] into the request's extensions, or answers `401`.
pub async fn authenticate(
    State(verifier): State<Arc<TokenVerifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return unauthorized("missing bearer token", false);
    };
    let Some(token) = value.to_str().ok().and_then(bearer) else {
        return unauthorized("the `Authorization` header is not `Bearer TOKEN`", true);
    };
    match verifier.verify(token) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => unauthorized(&problem, true),
    }
}

/// How many times the tools ran (shared by every clone): a refused call never adds to it.
#[derive(Debug, Clone, Default)]
pub struct Invocations(Arc<AtomicUsize>);

impl Invocations {
    /// The number of tool runs so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Deserialize, JsonSchema)]
struct ExportArgs {
    /// The table to export.
    table: String,
}

/// A data-platform server with two tools, `list_tables` and `export_table`, every call of which
/// the guard decides.
#[derive(Clone)]
pub struct TableServer {
    guard: PolicyGuard,
    tool_router: ToolRouter<Self>,
    invocations: Invocations,
}

impl std::fmt::Debug for TableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableServer").field("guard", &self.guard).finish_non_exhaustive()
    }
}

#[tool_router]
impl TableServer {
    /// A server whose calls `guard` decides; its tools count their runs in `invocations`.
    pub fn new(guard: PolicyGuard, invocations: Invocations) -> Self {
        TableServer { guard, tool_router: Self::tool_router(), invocations }
    }

    #[tool(description = "List the tables")]
    async fn list_tables(&self) -> String {
        self.invocations.add();
        "orders\ncustomers\n".to_owned()
    }

    #[tool(description = "Export a table as CSV")]
    async fn export_table(
        &self,
        Parameters(ExportArgs { table }): Parameters<ExportArgs>,
    ) -> String {
        self.invocations.add();
        format!("exported {table}")
    }
}

#[tool_handler(router = self.guard.router(&self.tool_router))]
impl ServerHandler for TableServer {}

/// The guard: the grant is the verified [`Caller`]'s, read from the HTTP request's extensions
/// (never from a header), and `context.scopes` its token's scopes. Without a `Caller` the grant
/// is `""`.
pub fn guard(evaluator: Arc<Evaluator>) -> PolicyGuard {
    PolicyGuard::new(evaluator).with_identity(|context| {
        let caller = http_extension::<Caller>(context);
        let scopes = caller.as_ref().map(|c| c.scopes.clone()).unwrap_or_default();
        Identity {
            grant: caller.map(|c| c.grant).unwrap_or_default(),
            session: http_header(context, "mcp-session-id"),
            context: Some(serde_json::json!({ "scopes": scopes })),
        }
    })
}

/// The MCP endpoint alone (no authentication): a streamable HTTP service whose session factory
/// clones `server`. Mount it behind [`authenticate`], as [`app`] does.
pub fn mcp_service(
    server: TableServer,
    stop: CancellationToken,
) -> StreamableHttpService<TableServer, LocalSessionManager> {
    // `server` (and the guard in it) was built once, by the caller; the factory only clones it,
    // so every session shares one evaluator and its counters. Building the guard in here would
    // give every session counters of its own: a new session would reset the caller's quota.
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Default::default(),
        StreamableHttpServerConfig::default().with_cancellation_token(stop),
    )
}

/// The application: `/mcp` behind the authentication layer.
pub fn app(server: TableServer, verifier: TokenVerifier, stop: CancellationToken) -> axum::Router {
    axum::Router::new()
        .nest_service("/mcp", mcp_service(server, stop))
        .layer(axum::middleware::from_fn_with_state(Arc::new(verifier), authenticate))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many times its tools ran.
    pub invocations: Invocations,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The MCP endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Ends the MCP sessions, stops accepting connections and waits for the server to stop.
    ///
    /// # Errors
    ///
    /// When serving failed.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Starts the server on `addr` (port 0 picks a free one): the evaluator of `policy` and the
/// guard are built here, once, for every session.
///
/// # Errors
///
/// A secret that is too short, or an address that cannot be bound.
pub async fn start(policy: Policy, secret: &[u8], addr: SocketAddr) -> Result<Running, String> {
    let verifier = TokenVerifier::hs256(secret)?;
    let invocations = Invocations::default();
    // Once, outside the session factory: see `mcp_service`.
    let server = TableServer::new(guard(Arc::new(Evaluator::new(policy))), invocations.clone());
    let stop = CancellationToken::new();
    let app = app(server, verifier, stop.child_token());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind `{addr}`: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("cannot bind `{addr}`: {e}"))?;
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
    });
    Ok(Running { addr, invocations, stop, task })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn a_verified_token_gives_its_subject_and_scopes() {
        let secret = [7u8; 32];
        let verifier = TokenVerifier::hs256(&secret).unwrap();
        let token = sign(&secret, &Claims::new("alice", &["a", "b"], Duration::from_secs(60)));
        let caller = verifier.verify(&token.unwrap()).unwrap();
        assert_eq!(caller, Caller { grant: "alice".into(), scopes: vec!["a".into(), "b".into()] });
    }

    #[test]
    fn tokens_are_refused_when_forged_expired_for_another_audience_or_anonymous() {
        let secret = [7u8; 32];
        let verifier = TokenVerifier::hs256(&secret).unwrap();
        let valid = Claims::new("alice", &[], Duration::from_secs(60));
        let forged = sign(&[8u8; 32], &valid).unwrap();
        assert!(verifier.verify(&forged).unwrap_err().contains("InvalidSignature"));
        let expired = Claims { exp: valid.exp - 3600, ..valid.clone() };
        assert!(verifier.verify(&sign(&secret, &expired).unwrap()).is_err());
        let other = Claims { aud: "another-server".into(), ..valid.clone() };
        assert!(verifier.verify(&sign(&secret, &other).unwrap()).is_err());
        let anonymous = Claims { sub: String::new(), ..valid };
        assert!(verifier.verify(&sign(&secret, &anonymous).unwrap()).unwrap_err().contains("sub"));
        assert!(TokenVerifier::hs256(b"short").unwrap_err().contains("32"));
    }
}
