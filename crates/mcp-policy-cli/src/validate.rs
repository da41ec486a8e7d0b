//! `mcp-policy validate`: every problem of every policy file, and with `--tools`, the warnings
//! that only the server's tool list can reveal.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mcp_policy::{Diagnostic, Policy, PolicyError, ToolInfo};

use crate::classify::{Class, classify};
use crate::locate::LineIndex;
use crate::report::{self, Finding, Severity};
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
            Err(PolicyError::Invalid(e)) => {
                e.diagnostics().iter().map(|d| finding(&file, d)).collect()
            }
            Err(e) => return Err(Failure::Usage(e.to_string())),
            Ok(policy) => {
                let mut found: Vec<Diagnostic> = policy.warnings().to_vec();
                if let Some(tools) = &tools {
                    found.extend(lint(&policy, tools));
                    found.sort_by_key(|d| (d.line(), d.column()));
                }
                let warnings: Vec<Finding> = found.iter().map(|d| finding(&file, d)).collect();
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

/// The library's tool-list lint, with the classifier's verdict as each tool's risk.
fn lint(policy: &Policy, tools: &[Tool]) -> Vec<Diagnostic> {
    let infos: Vec<ToolInfo> = tools
        .iter()
        .map(|tool| {
            let info = ToolInfo::new(tool.name.as_str());
            let (class, basis) = classify(tool);
            if matches!(class, Class::Destructive | Class::Execute | Class::Financial) {
                info.with_risk(format!("{class} ({basis})"))
            } else {
                info
            }
        })
        .collect();
    mcp_policy::lint(policy, &infos)
}

fn finding(file: &str, d: &Diagnostic) -> Finding {
    Finding {
        file: file.to_owned(),
        line: d.line(),
        column: d.column(),
        pointer: d.pointer().to_owned(),
        severity: if d.severity() == mcp_policy::Severity::Warning {
            Severity::Warning
        } else {
            Severity::Error
        },
        kind: d.kind().as_str().to_owned(),
        message: d.message().to_owned(),
    }
}
