//! `mcp-policy init`: a starter policy from a server's tool list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_policy::model::{
    ApprovalCheck, DefaultDecision, Limit, PolicyDocument, Rule, Window, WindowUnit,
};

use crate::classify::{Class, classify};
use crate::{Out, Result, mcp_client, tools};

/// Calls a minute per grant for a write tool.
const WRITES_PER_MINUTE: u64 = 30;
/// Calls a minute per grant for an execute tool.
const EXECUTIONS_PER_MINUTE: u64 = 10;

/// Where `init` gets the tool list.
pub(crate) enum Source {
    /// A file holding a `tools/list` result.
    File(PathBuf),
    /// A stdio MCP server to start and ask.
    Server {
        /// The program and its arguments.
        command: Vec<String>,
        /// How long to wait for each answer.
        timeout: Duration,
        /// Where to also write the tool list, when asked.
        save_tools: Option<PathBuf>,
    },
}

pub(crate) fn run(
    source: Source,
    out_path: Option<&Path>,
    approve_destructive: bool,
    out: &mut Out<'_>,
) -> Result<u8> {
    let tools = match source {
        Source::File(path) => tools::read(&path)?,
        Source::Server { command, timeout, save_tools } => {
            let listed = mcp_client::list_tools(&command, timeout)?;
            if let Some(path) = save_tools {
                let mut text = serde_json::to_string_pretty(&serde_json::json!({
                    "tools": listed
                }))
                .map_err(|e| e.to_string())?;
                text.push('\n');
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            tools::from_values(listed).map_err(|e| {
                format!("the server `{}` listed a tool `init` cannot read: {e}", command.join(" "))
            })?
        }
    };
    let document = starter_policy(&tools, approve_destructive)?;
    // The output must load: compile the document (the loader's checks, without printing and
    // re-reading it) before writing it anywhere.
    let policy = mcp_policy::Policy::try_from(document)
        .map_err(|e| format!("internal error: the starter policy does not load: {e}"))?;
    let mut text = serde_json::to_string_pretty(policy.document()).map_err(|e| e.to_string())?;
    text.push('\n');
    match out_path {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(0)
}

/// The `$id` of the policy JSON Schema, which a written policy names as its `$schema`.
fn schema_id() -> Option<String> {
    mcp_policy::Policy::json_schema().get("$id").and_then(|v| v.as_str()).map(str::to_owned)
}

fn limit(tool: &str, max: u64) -> Limit {
    Limit::new(format!("{tool}_rate"), Window::Named(WindowUnit::Minute), max)
}

fn approval(reason: &str) -> ApprovalCheck {
    ApprovalCheck { reason: Some(reason.to_owned()), ..ApprovalCheck::new(Vec::new()) }
}

pub(crate) fn starter_policy(
    tools: &[tools::Tool],
    approve_destructive: bool,
) -> std::result::Result<PolicyDocument, String> {
    let mut rules = BTreeMap::new();
    let mut hide = Vec::new();
    let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
    for tool in tools {
        let name = tool.name.as_str();
        if name.is_empty() || name.contains('*') {
            crate::report::warning_line(&format!(
                "skipping tool `{name}`: a policy cannot name it exactly"
            ));
            continue;
        }
        if rules.contains_key(name) {
            continue;
        }
        let (class, basis) = classify(tool);
        *counts.entry(class).or_default() += 1;
        let mut rule = Rule::default();
        let note = match class {
            Class::Read => "allowed".to_owned(),
            Class::Write => {
                rule.limits.push(limit(name, WRITES_PER_MINUTE));
                format!("{WRITES_PER_MINUTE} calls a minute per grant")
            }
            Class::Execute => {
                rule.limits.push(limit(name, EXECUTIONS_PER_MINUTE));
                format!("{EXECUTIONS_PER_MINUTE} calls a minute per grant")
            }
            Class::Destructive => {
                rule.approve_if.push(approval("destructive: a human approves every call"));
                if approve_destructive {
                    "a human approves every call".to_owned()
                } else {
                    hide.push(name.to_owned());
                    "hidden; to allow it, remove it from `hide` (a human then approves every call)"
                        .to_owned()
                }
            }
            Class::Financial => {
                rule.approve_if.push(approval("financial: a human approves every call"));
                "a human approves every call".to_owned()
            }
        };
        rule.description = Some(format!("{class} ({basis}): {note}"));
        rules.insert(name.to_owned(), rule);
    }
    if rules.is_empty() {
        return Err("the tool list has no tool a policy can name".to_owned());
    }
    let summary: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
    let mut document = PolicyDocument::new(DefaultDecision::Deny);
    document.schema = schema_id();
    document.description = Some(format!(
        "starter policy written by `mcp-policy init` for {} tools: {}",
        rules.len(),
        summary.join(", ")
    ));
    document.hide = hide;
    document.tools = rules;
    Ok(document)
}
