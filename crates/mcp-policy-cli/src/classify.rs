//! Classifying tools as read, write, execute, destructive or financial.
//!
//! MCP annotations decide when a server sets them (`destructiveHint`, `readOnlyHint`). Otherwise
//! the words of the tool's name decide, then the words of its description. The order of the
//! checks puts the riskier class first: a `sync_and_delete` tool is destructive, not a write.

use std::fmt;

use crate::tools::Tool;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    Read,
    Write,
    Execute,
    Destructive,
    Financial,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Execute => "execute",
            Class::Destructive => "destructive",
            Class::Financial => "financial",
        })
    }
}

/// Where a classification came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Basis {
    Annotations,
    Name,
    Description,
    /// Nothing recognisable: treated as a write, the cautious middle.
    Unknown,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Annotations => "from its MCP annotations",
            Basis::Name => "from its name",
            Basis::Description => "from its description",
            Basis::Unknown => "unrecognised, treated as a write",
        })
    }
}

const FINANCIAL: &[&str] = &[
    "pay",
    "payment",
    "payments",
    "payout",
    "transfer",
    "refund",
    "charge",
    "invoice",
    "purchase",
    "buy",
    "sell",
    "withdraw",
    "deposit",
    "billing",
    "bill",
    "checkout",
    "subscribe",
    "money",
    "wire",
    "trade",
];
const DESTRUCTIVE: &[&str] = &[
    "delete",
    "remove",
    "rm",
    "drop",
    "destroy",
    "purge",
    "truncate",
    "wipe",
    "erase",
    "terminate",
    "kill",
    "uninstall",
    "revoke",
    "unlink",
    "reset",
    "clear",
    "deprovision",
];
const EXECUTE: &[&str] = &[
    "run", "execute", "exec", "start", "stop", "restart", "cancel", "trigger", "invoke", "launch",
    "sync", "deploy", "build", "submit", "send", "call", "eval", "shell", "command", "sql",
    "query", "install",
];
const WRITE: &[&str] = &[
    "create", "update", "put", "post", "patch", "set", "add", "write", "upload", "import", "edit",
    "rename", "move", "copy", "insert", "upsert", "modify", "save", "pull", "push", "merge",
    "commit", "enable", "disable", "grant", "assign", "attach", "detach", "approve", "schedule",
    "new", "register",
];
const READ: &[&str] = &[
    "list", "get", "read", "describe", "show", "search", "find", "fetch", "export", "view",
    "download", "lookup", "count", "status", "info", "inspect", "lineage", "check", "validate",
    "preview", "head", "tail", "cat", "stat", "ls",
];

/// The words of a name: split at `_`, `-`, `.`, `/`, spaces and camelCase boundaries, lowercased.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `word`, or `word` without an inflection (`removes`, `deleted`, `running`), is in
/// `list`.
fn names(word: &str, list: &[&str]) -> bool {
    let stems = [
        Some(word),
        word.strip_suffix('s'),
        word.strip_suffix("es"),
        word.strip_suffix('d'),
        word.strip_suffix("ed"),
        word.strip_suffix("ing"),
        word.strip_suffix("ning"),
    ];
    stems.into_iter().flatten().any(|w| list.contains(&w))
}

/// The class `words` name: a financial or destructive word anywhere decides (the riskiest
/// first); otherwise the first word that names an action does (`get_run_status` reads, even
/// though `run` executes).
fn by_words(words: &[String]) -> Option<Class> {
    let has = |list: &[&str]| words.iter().any(|w| names(w, list));
    if has(FINANCIAL) {
        return Some(Class::Financial);
    }
    if has(DESTRUCTIVE) {
        return Some(Class::Destructive);
    }
    words.iter().find_map(|w| {
        if names(w, EXECUTE) {
            Some(Class::Execute)
        } else if names(w, WRITE) {
            Some(Class::Write)
        } else if names(w, READ) {
            Some(Class::Read)
        } else {
            None
        }
    })
}

/// The class of a tool, and what it was decided from.
pub(crate) fn classify(tool: &Tool) -> (Class, Basis) {
    if let Some(a) = &tool.annotations {
        // A financial name outweighs the hints: moving money always needs a human.
        if by_words(&words(&tool.name)) == Some(Class::Financial) {
            return (Class::Financial, Basis::Name);
        }
        match (a.destructive_hint, a.read_only_hint) {
            (_, Some(true)) => return (Class::Read, Basis::Annotations),
            (Some(true), _) => return (Class::Destructive, Basis::Annotations),
            (Some(false), Some(false)) => {
                // Not destructive and not read-only: a write, or an execution by its name.
                let class = match by_words(&words(&tool.name)) {
                    Some(Class::Execute) => Class::Execute,
                    _ => Class::Write,
                };
                return (class, Basis::Annotations);
            }
            // MCP's default for `destructiveHint` is true when the tool is not read-only.
            (None, Some(false)) => return (Class::Destructive, Basis::Annotations),
            _ => {}
        }
    }
    if let Some(c) = by_words(&words(&tool.name)) {
        return (c, Basis::Name);
    }
    if let Some(c) = tool.description.as_deref().and_then(|d| by_words(&words(d))) {
        return (c, Basis::Description);
    }
    (Class::Write, Basis::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Annotations;

    fn tool(name: &str) -> Tool {
        Tool { name: name.into(), description: None, annotations: None }
    }

    #[test]
    fn by_name() {
        assert_eq!(classify(&tool("list_clusters")).0, Class::Read);
        assert_eq!(classify(&tool("getRunStatus")).0, Class::Read);
        assert_eq!(classify(&tool("get_run_status")).0, Class::Read);
        assert_eq!(classify(&tool("list_job_runs")).0, Class::Read);
        assert_eq!(classify(&tool("cancel_run")).0, Class::Execute);
        assert_eq!(classify(&tool("execute_sql")).0, Class::Execute);
        assert_eq!(classify(&tool("create_cluster")).0, Class::Write);
        assert_eq!(classify(&tool("delete_job")).0, Class::Destructive);
        assert_eq!(classify(&tool("dbfs_delete")).0, Class::Destructive);
        assert_eq!(classify(&tool("sync_repo_and_run_notebook")).0, Class::Execute);
        assert_eq!(classify(&tool("transfer_funds")).0, Class::Financial);
        assert_eq!(classify(&tool("frobnicate")), (Class::Write, Basis::Unknown));
    }

    #[test]
    fn annotations_first() {
        let mut t = tool("delete_cache");
        t.annotations = Some(Annotations { read_only_hint: Some(true), ..Default::default() });
        assert_eq!(classify(&t), (Class::Read, Basis::Annotations));
        let mut t = tool("list_things");
        t.annotations = Some(Annotations { destructive_hint: Some(true), ..Default::default() });
        assert_eq!(classify(&t), (Class::Destructive, Basis::Annotations));
        let mut t = tool("pay_invoice");
        t.annotations =
            Some(Annotations { read_only_hint: Some(false), destructive_hint: Some(false) });
        assert_eq!(classify(&t).0, Class::Financial);
    }

    #[test]
    fn description_when_the_name_says_nothing() {
        let mut t = tool("frobnicate");
        t.description = Some("Permanently removes the widget".into());
        assert_eq!(classify(&t), (Class::Destructive, Basis::Description));
    }
}
