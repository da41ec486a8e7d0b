//! An MCP server over stdio with four file tools, written with rmcp's `#[tool_router]` and
//! `#[tool_handler]` macros, every call guarded by a policy file.
//!
//! ```text
//! guarded-server POLICY.json
//! ```
//!
//! The tools (`list_dir`, `read_file`, `write_file`, `delete_file`) act on absolute paths and do
//! no checking of their own: what they may touch is the policy's business. The policy of this
//! directory confines every call to `/tmp/mcp-policy-demo` with `within`, hides `delete_file`,
//! limits every tool to 120 calls a minute (a call that fails, say on a missing file, still
//! counts: it ran), lets `write_file` write only plain-data files (an allow-list of extensions:
//! `.txt`, `.md`, `.csv`, `.json`) and asks a human before anything is written under `shared/`.
//! The caller's grant is `$MCP_POLICY_GRANT` (default `stdio`). Decisions are logged to standard
//! error as `tracing` events.
//!
//! Guarding the router takes one attribute argument, `router =
//! self.guard.router(&self.tool_router)`: `list_tools` then lists only the tools the policy lets
//! a client see, and `call_tool` decides each call before the router runs it.
//!
//! To plug it into an MCP client (Claude Desktop, an IDE, `npx @modelcontextprotocol/inspector`),
//! register the command `guarded-server /path/to/policy.json` as a stdio server.

use std::path::Path;
use std::sync::Arc;

use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::PolicyGuard;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A file server whose every call the guard decides.
#[derive(Clone)]
struct FileServer {
    guard: PolicyGuard,
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
struct PathArgs {
    /// An absolute path.
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    /// An absolute path.
    path: String,
    /// The text to write.
    content: String,
}

/// The entries of a directory, sorted.
#[derive(Serialize, JsonSchema)]
struct Listing {
    entries: Vec<String>,
}

#[tool_router]
impl FileServer {
    fn new(guard: PolicyGuard) -> Self {
        FileServer { guard, tool_router: Self::tool_router() }
    }

    /// Its errors are tool results the model can read (`isError`), not protocol errors.
    #[tool(description = "List a directory")]
    async fn list_dir(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<Json<Listing>, String> {
        let mut entries = Vec::new();
        let mut dir = tokio::fs::read_dir(&path).await.map_err(|e| format!("list_dir: {e}"))?;
        while let Some(e) = dir.next_entry().await.map_err(|e| format!("list_dir: {e}"))? {
            entries.push(e.file_name().to_string_lossy().into_owned());
        }
        entries.sort();
        Ok(Json(Listing { entries }))
    }

    #[tool(description = "Read a text file")]
    async fn read_file(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<String, String> {
        tokio::fs::read_to_string(&path).await.map_err(|e| format!("read_file: {e}"))
    }

    #[tool(description = "Write a text file")]
    async fn write_file(
        &self,
        Parameters(WriteArgs { path, content }): Parameters<WriteArgs>,
    ) -> Result<String, String> {
        tokio::fs::write(&path, content)
            .await
            .map(|()| format!("wrote {path}"))
            .map_err(|e| format!("write_file: {e}"))
    }

    #[tool(description = "Delete a file")]
    async fn delete_file(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<String, String> {
        tokio::fs::remove_file(&path)
            .await
            .map(|()| format!("deleted {path}"))
            .map_err(|e| format!("delete_file: {e}"))
    }
}

#[tool_handler(router = self.guard.router(&self.tool_router))]
impl ServerHandler for FileServer {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let Some(policy_path) = std::env::args().nth(1) else {
        eprintln!("usage: guarded-server POLICY.json");
        return std::process::ExitCode::from(2);
    };
    let policy = match Policy::from_path(Path::new(&policy_path)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{policy_path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let grant = std::env::var("MCP_POLICY_GRANT").unwrap_or_else(|_| "stdio".to_owned());
    let guard = PolicyGuard::new(Arc::new(Evaluator::new(policy))).with_fixed_grant(grant);
    let server = match FileServer::new(guard).serve(rmcp::transport::stdio()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the MCP server: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match server.waiting().await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("the MCP server stopped: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
