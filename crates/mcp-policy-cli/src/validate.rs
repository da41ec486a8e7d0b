//! `mcp-policy validate`: every problem of every policy file, and with `--tools`, the warnings
//! that only the server's tool list can reveal.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mcp_policy::model::DefaultDecision;
use mcp_policy::pattern_matches;
use mcp_policy::{Policy, PolicyError};

use crate::classify::{Class, classify};
use crate::locate::{LineIndex, Spans, join};
use crate::report::{self, Finding, Severity, closest};
use crate::tools::{self, Tool};
use crate::{Failure, Out, Result};

/// Finds every problem of every file in `paths`. Text goes to standard error (findings, the
/// line of each valid file, the count); with `json`, only the array of findings is written, to
/// `out`.
pub(crate) fn run(
    paths: &[PathBuf],
    tools_path: Option<&Path>,
    json: bool,
    deny_warnings: bool,
    out: &mut Out<'_>,
) -> Result<u8> {
    let tools = tools_path.map(tools::read).transpose()?;
    let color = !json && report::stderr_is_terminal();
    let stderr = std::io::stderr();
    let mut err = BufWriter::with_capacity(1 << 16, stderr.lock());
    let mut all: Vec<Finding> = Vec::new();
    let mut unreadable = false;
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let label = report::paint("error", report::RED, color);
                writeln!(err, "{label}: cannot read `{file}`: {e}")?;
                unreadable = true;
                continue;
            }
        };
        let lines = LineIndex::new(&text);
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
            Err(e) => return Err(Failure::Usage(e.to_string())),
            Ok(policy) => {
                let warnings = match &tools {
                    Some(tools) => warnings(&policy, &text, &lines, &file, tools),
                    None => Vec::new(),
                };
                if !json && warnings.is_empty() {
                    let rules = policy.document().tools.len();
                    writeln!(
                        err,
                        "{file}: valid ({rules} rule{}, digest {})",
                        plural(rules),
                        policy.digest().get(..12).unwrap_or_default()
                    )?;
                }
                warnings
            }
        };
        if !json {
            for f in &findings {
                err.write_all(report::text(f, Some(&lines), color).as_bytes())?;
            }
        }
        all.extend(findings);
    }
    if json {
        serde_json::to_writer_pretty(&mut *out, &all).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    let errors = all.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = all.len() - errors;
    if !json && (errors > 0 || warnings > 0) {
        writeln!(err, "{errors} error{}, {warnings} warning{}", plural(errors), plural(warnings))?;
    }
    err.flush()?;
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
///
/// Linear in the size of the policy and of the tool list (apart from the suggestions for the
/// entries that match nothing): the text is scanned once for positions, each tool's rule is
/// found once.
fn warnings(
    policy: &Policy,
    text: &str,
    lines: &LineIndex<'_>,
    file: &str,
    tools: &[Tool],
) -> Vec<Finding> {
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let name_set: HashSet<&str> = names.iter().copied().collect();
    let matches_a_tool = |pattern: &str| {
        if pattern.contains('*') {
            names.iter().any(|n| pattern_matches(pattern, n))
        } else {
            name_set.contains(pattern)
        }
    };
    // The rule key each tool is governed by: a key no tool reaches is unused.
    let used: HashSet<&str> = names.iter().filter_map(|n| policy.rule_key(n)).collect();
    let spans = Spans::new(text, 2);
    let mut out = Vec::new();
    let mut warn = |pointer: String, kind: &str, message: String| {
        let (line, column) = lines.line_column(spans.offset(&pointer));
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
        if used.contains(key.as_str()) {
            continue;
        }
        let pointer = join("/tools", key);
        let message = if matches_a_tool(key) {
            format!(
                "rule `{key}` applies to no tool of the server: a more specific rule governs every tool it matches"
            )
        } else {
            format!("rule `{key}` matches no tool of the server{}", hint(key, &names))
        };
        warn(pointer, "UnusedRule", message);
    }
    for (i, entry) in policy.document().hide.iter().enumerate() {
        if !matches_a_tool(entry) {
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
    closest(key, names.iter().copied())
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
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
