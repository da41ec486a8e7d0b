//! An MCP server over stdio with four file tools, every call guarded by a policy file.
//!
//! ```text
//! guarded-server POLICY.json
//! ```
//!
//! The tools (`list_dir`, `read_file`, `write_file`, `delete_file`) act on absolute paths and do
//! no checking of their own: what they may touch is the policy's business. The policy of this
//! directory confines every call to `/tmp/mcp-policy-demo` with `within`, hides `delete_file`,
//! and asks a human before a `.sh` file is written. The caller's grant is `$MCP_POLICY_GRANT`
//! (default `stdio`). Decisions are logged to standard error as `tracing` events.
//!
//! To plug it into an MCP client (Claude Desktop, an IDE, `npx @modelcontextprotocol/inspector`),
//! register the command `guarded-server /path/to/policy.json` as a stdio server.

use std::path::Path;
use std::sync::Arc;

use mcp_policy::{Evaluator, Policy};
use mcp_policy_rmcp::PolicyGuard;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

struct FileServer {
    guard: PolicyGuard,
}

fn tools() -> Vec<Tool> {
    let schema = |v: Value| Arc::new(v.as_object().cloned().unwrap_or_default());
    let path = json!({ "type": "string", "description": "an absolute path" });
    vec![
        Tool::new(
            "list_dir",
            "List a directory",
            schema(json!({"type": "object", "properties": {"path": path}, "required": ["path"]})),
        ),
        Tool::new(
            "read_file",
            "Read a text file",
            schema(json!({"type": "object", "properties": {"path": path}, "required": ["path"]})),
        ),
        Tool::new(
            "write_file",
            "Write a text file",
            schema(
                json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
            ),
        ),
        Tool::new(
            "delete_file",
            "Delete a file",
            schema(json!({"type": "object", "properties": {"path": path}, "required": ["path"]})),
        ),
    ]
}

/// Runs a tool; its errors are tool-level results the model can read.
async fn run(request: CallToolRequestParams) -> Result<CallToolResult, ErrorData> {
    let args = request.arguments.unwrap_or_default();
    let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let path = arg("path");
    let outcome: std::io::Result<String> = match &*request.name {
        "list_dir" => {
            async {
                let mut names = Vec::new();
                let mut entries = tokio::fs::read_dir(&path).await?;
                while let Some(e) = entries.next_entry().await? {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
                names.sort();
                Ok(names.join("\n"))
            }
            .await
        }
        "read_file" => tokio::fs::read_to_string(&path).await,
        "write_file" => {
            tokio::fs::write(&path, arg("content")).await.map(|()| format!("wrote {path}"))
        }
        "delete_file" => tokio::fs::remove_file(&path).await.map(|()| format!("deleted {path}")),
        other => return Err(ErrorData::invalid_params(format!("no tool `{other}`"), None)),
    };
    Ok(match outcome {
        Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("{}: {e}", request.name))]),
    })
}

impl ServerHandler for FileServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.guard.filter_tools(tools())))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.guard.call_tool(request, context, |request, _context| run(request)).await
    }
}

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
    let server = match (FileServer { guard }).serve(rmcp::transport::stdio()).await {
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
