//! `mcp-policy validate`: every problem of every policy file, and with `--tools`, the warnings
//! that only the server's tool list can reveal.

use std::path::{Path, PathBuf};

use mcp_policy::model::DefaultDecision;
use mcp_policy::policy::{did_you_mean, locate, pattern_matches};
use mcp_policy::{Policy, PolicyError};

use crate::classify::{Class, classify};
use crate::report::{self, Finding, Severity};
use crate::tools::{self, Tool};

pub(crate) fn run(
    paths: &[PathBuf],
    tools_path: Option<&Path>,
    json: bool,
    deny_warnings: bool,
) -> Result<u8, String> {
    let tools = tools_path.map(tools::read).transpose()?;
    let color = !json && report::stdout_is_terminal();
    let mut all: Vec<Finding> = Vec::new();
    let mut unreadable = false;
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "{}: cannot read `{file}`: {e}",
                    report::paint("error", report::RED, report::stderr_is_terminal())
                );
                unreadable = true;
                continue;
            }
        };
        let findings = match Policy::from_json_str(&text) {
            Err(PolicyError::Invalid(e)) => e
                .diagnostics()
                .iter()
                .map(|d| Finding {
                    file: file.clone(),
                    line: d.line(),
                    column: d.column(),
                    pointer: d.pointer().to_owned(),
                    severity: Severity::Error,
                    kind: format!("{:?}", d.kind()),
                    message: d.message().to_owned(),
                })
                .collect(),
            Err(e) => return Err(e.to_string()),
            Ok(policy) => {
                let warnings = match &tools {
                    Some(tools) => warnings(&policy, &text, &file, tools),
                    None => Vec::new(),
                };
                if !json && warnings.is_empty() {
                    let rules = policy.document().tools.len();
                    println!(
                        "{file}: valid ({rules} rule{}, digest {})",
                        plural(rules),
                        policy.digest().get(..12).unwrap_or_default()
                    );
                }
                warnings
            }
        };
        if !json {
            for f in &findings {
                print!("{}", report::text(f, Some(&text), color));
            }
        }
        all.extend(findings);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?);
    }
    let errors = all.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = all.len() - errors;
    if !json && (errors > 0 || warnings > 0) {
        eprintln!("{errors} error{}, {warnings} warning{}", plural(errors), plural(warnings));
    }
    Ok(if unreadable {
        crate::EXIT_USAGE
    } else if errors > 0 || (deny_warnings && warnings > 0) {
        1
    } else {
        0
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What the tool list reveals: rules and hide entries that match no tool, and risky tools that
/// `default: allow` leaves without a rule.
fn warnings(policy: &Policy, text: &str, file: &str, tools: &[Tool]) -> Vec<Finding> {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    let mut warn = |pointer: String, kind: &str, message: String| {
        let (line, column) = locate(text, &pointer);
        out.push(Finding {
            file: file.to_owned(),
            line,
            column,
            pointer,
            severity: Severity::Warning,
            kind: kind.to_owned(),
            message,
        });
    };
    for key in policy.document().tools.keys() {
        if names.iter().any(|n| policy.rule_key(n) == Some(key.as_str())) {
            continue;
        }
        let pointer = format!("/tools/{}", escape(key));
        let message = if names.iter().any(|n| pattern_matches(key, n)) {
            format!(
                "rule `{key}` applies to no tool of the server: a more specific rule governs every tool it matches"
            )
        } else {
            format!("rule `{key}` matches no tool of the server{}", hint(key, &names))
        };
        warn(pointer, "UnusedRule", message);
    }
    for (i, entry) in policy.document().hide.iter().enumerate() {
        if !names.iter().any(|n| pattern_matches(entry, n)) {
            let message = format!(
                "hide entry `{entry}` matches no tool of the server{}",
                hint(entry, &names)
            );
            warn(format!("/hide/{i}"), "UnusedHide", message);
        }
    }
    if policy.document().default == DefaultDecision::Allow {
        for tool in tools {
            let (class, basis) = classify(tool);
            let risky = matches!(class, Class::Destructive | Class::Execute | Class::Financial);
            if risky && policy.rule_key(&tool.name).is_none() && !policy.is_hidden(&tool.name) {
                warn(
                    "/default".to_owned(),
                    "Unguarded",
                    format!(
                        "tool `{}` is {class} ({basis}) and has no rule: `default: allow` lets \
                         every call of it through",
                        tool.name
                    ),
                );
            }
        }
    }
    out
}

/// "; did you mean `x`?" for the tool name closest to `key`, when it is close.
fn hint(key: &str, names: &[&str]) -> String {
    did_you_mean(key, names.iter().copied())
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

/// A tool key as a JSON Pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(
            hint("cancle_run", &["cancel_run", "list_jobs"]),
            "; did you mean `cancel_run`?"
        );
        assert_eq!(hint("zzzzzz", &["cancel_run"]), "");
    }
}
