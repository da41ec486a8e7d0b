//! Classifying tools as read, write, execute, destructive or financial.
//!
//! Three sources each may name a class: the tool's MCP annotations (`destructiveHint`,
//! `readOnlyHint`), the words of its name and the words of its description. The most dangerous
//! class any of them names wins. MCP calls annotations from a server *hints*, which a client must
//! not trust: `delete_database` annotated `readOnlyHint: true` is still destructive (issue 10).
//! Within one text, a financial or destructive word anywhere decides: a `sync_and_delete` tool is
//! destructive, not a write.

use std::fmt;

use crate::tools::{Annotations, Tool};

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
/// `list`. Without `past`, the past participle (`deleted`, `terminated`) does not count: in a
/// sentence it is mostly an adjective ("start a terminated cluster").
fn names(word: &str, list: &[&str], past: bool) -> bool {
    let stems = [
        Some(word),
        word.strip_suffix('s'),
        word.strip_suffix("es"),
        word.strip_suffix('d').filter(|_| past),
        word.strip_suffix("ed").filter(|_| past),
        word.strip_suffix("ing"),
        word.strip_suffix("ning"),
    ];
    stems.into_iter().flatten().any(|w| list.contains(&w))
}

/// The class `words` name: a financial or destructive word anywhere decides (the riskiest
/// first); otherwise the first word that names an action does (`get_run_status` reads, even
/// though `run` executes). `past` counts past participles (in a name, `deleted` is an action; in
/// a description, mostly an adjective).
fn by_words(words: &[String], past: bool) -> Option<Class> {
    let has = |list: &[&str]| words.iter().any(|w| names(w, list, past));
    if has(FINANCIAL) {
        return Some(Class::Financial);
    }
    if has(DESTRUCTIVE) {
        return Some(Class::Destructive);
    }
    words.iter().find_map(|w| {
        if names(w, EXECUTE, past) {
            Some(Class::Execute)
        } else if names(w, WRITE, past) {
            Some(Class::Write)
        } else if names(w, READ, past) {
            Some(Class::Read)
        } else {
            None
        }
    })
}

/// The class a tool's annotations give, when they say anything about its effects.
fn by_annotations(a: &Annotations) -> Option<Class> {
    match (a.destructive_hint, a.read_only_hint) {
        (Some(true), _) => Some(Class::Destructive),
        (_, Some(true)) => Some(Class::Read),
        (Some(false), _) => Some(Class::Write),
        // MCP's default for `destructiveHint` is true when the tool is not read-only.
        (None, Some(false)) => Some(Class::Destructive),
        (None, None) => None,
    }
}

/// The class of a tool, and what it was decided from: the most dangerous class that its
/// annotations, its name or its description names. On a tie the first source in that order is
/// named.
pub(crate) fn classify(tool: &Tool) -> (Class, Basis) {
    let candidates = [
        (tool.annotations.as_ref().and_then(by_annotations), Basis::Annotations),
        (by_words(&words(&tool.name), true), Basis::Name),
        (tool.description.as_deref().and_then(|d| by_words(&words(d), false)), Basis::Description),
    ];
    let mut best: Option<(Class, Basis)> = None;
    for (class, basis) in candidates {
        if let Some(c) = class
            && best.is_none_or(|(b, _)| c > b)
        {
            best = Some((c, basis));
        }
    }
    best.unwrap_or((Class::Write, Basis::Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn annotated(name: &str, read_only: Option<bool>, destructive: Option<bool>) -> Tool {
        let mut t = tool(name);
        t.annotations =
            Some(Annotations { read_only_hint: read_only, destructive_hint: destructive });
        t
    }

    #[test]
    fn annotations_never_make_a_dangerous_name_safe() {
        // Issue 10: a server's hints are not trusted over the name.
        let t = annotated("delete_database", Some(true), None);
        assert_eq!(classify(&t), (Class::Destructive, Basis::Name));
        let t = annotated("delete_cache", Some(true), Some(false));
        assert_eq!(classify(&t), (Class::Destructive, Basis::Name));
        let t = annotated("pay_invoice", Some(false), Some(false));
        assert_eq!(classify(&t), (Class::Financial, Basis::Name));
        let t = annotated("run_job", Some(true), None);
        assert_eq!(classify(&t), (Class::Execute, Basis::Name));
        // Nor over the description.
        let mut t = annotated("frobnicate", Some(true), None);
        t.description = Some("Drops the whole table".into());
        assert_eq!(classify(&t), (Class::Destructive, Basis::Description));
    }

    #[test]
    fn annotations_make_a_tool_more_dangerous_and_say_so() {
        let t = annotated("list_things", None, Some(true));
        assert_eq!(classify(&t), (Class::Destructive, Basis::Annotations));
        let t = annotated("list_things", Some(false), None);
        assert_eq!(classify(&t), (Class::Destructive, Basis::Annotations));
        let t = annotated("list_things", Some(false), Some(false));
        assert_eq!(classify(&t), (Class::Write, Basis::Annotations));
        let t = annotated("frobnicate", Some(true), None);
        assert_eq!(classify(&t), (Class::Read, Basis::Annotations));
        // A tie names the annotations only when they gave the class first.
        let t = annotated("delete_job", None, Some(true));
        assert_eq!(classify(&t), (Class::Destructive, Basis::Annotations));
        // A read-only hint on a read name: read, from the annotations.
        let t = annotated("list_jobs", Some(true), None);
        assert_eq!(classify(&t), (Class::Read, Basis::Annotations));
        // Hints that say nothing of effects leave the name to decide.
        let t = annotated("list_jobs", None, None);
        assert_eq!(classify(&t), (Class::Read, Basis::Name));
    }

    #[test]
    fn description_when_the_name_says_nothing() {
        let mut t = tool("frobnicate");
        t.description = Some("Permanently removes the widget".into());
        assert_eq!(classify(&t), (Class::Destructive, Basis::Description));
    }

    #[test]
    fn a_past_participle_in_a_description_is_an_adjective() {
        let mut t = tool("start_cluster");
        t.description = Some("Start a terminated cluster".into());
        assert_eq!(classify(&t), (Class::Execute, Basis::Name));
        let mut t = tool("frobnicate");
        t.description = Some("Lists deleted widgets".into());
        assert_eq!(classify(&t), (Class::Read, Basis::Description));
    }

    #[test]
    fn a_dangerous_description_outweighs_a_safe_name() {
        let mut t = tool("get_widget");
        t.description = Some("Gets a widget, then deletes it".into());
        assert_eq!(classify(&t), (Class::Destructive, Basis::Description));
        let mut t = tool("list_jobs");
        t.description = Some("List jobs".into());
        assert_eq!(classify(&t), (Class::Read, Basis::Name));
    }
}
