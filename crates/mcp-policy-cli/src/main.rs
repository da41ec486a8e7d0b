//! `mcp-policy`: validate, check, test and write MCP tool-call policies.
//!
//! See `docs/cli.md` for every command, its exit codes and an example session.

mod check;
mod classify;
mod init;
mod replay;
mod report;
mod test_cmd;
mod time;
mod tools;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Check and test MCP tool-call policies.
#[derive(Debug, Parser)]
#[command(name = "mcp-policy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files; report every problem with its line and column.
    ///
    /// Exit status: 0 valid, 1 invalid (or warnings with --deny-warnings), 2 usage or I/O error.
    Validate {
        /// Policy files to check.
        #[arg(required = true, value_name = "POLICY")]
        policies: Vec<PathBuf>,
        /// A server's `tools/list` result (`{"tools": [...]}` or a bare array): also warn of
        /// rules and hide entries that match no tool, and of risky tools left unguarded.
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Treat warnings as errors (exit status 1).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Replay calls (JSON lines) against a policy and print one decision per line.
    ///
    /// Each line: {"tool", "arguments", "grant", "session", "context", "at", "approved"}; only
    /// `tool` is required. `at` (Unix seconds or RFC 3339) drives the clock, so a replay is
    /// deterministic. Exit status: 0, or 1 when a line was malformed; 2 on I/O errors.
    Check {
        /// The policy file.
        #[arg(value_name = "POLICY")]
        policy: PathBuf,
        /// The calls, one JSON object a line; standard input when absent.
        #[arg(value_name = "CALLS.jsonl")]
        calls: Option<PathBuf>,
    },
    /// Run policy unit tests: sequences of calls with the decision each must get.
    ///
    /// Ends with the line `N passed, N failed`. Exit status: 0 all passed, 1 a case failed,
    /// 2 usage or I/O error.
    Test {
        /// The policy file.
        #[arg(value_name = "POLICY")]
        policy: PathBuf,
        /// The test cases.
        #[arg(value_name = "CASES.json")]
        cases: PathBuf,
    },
    /// Print the JSON Schema of the policy document.
    Schema,
    /// Write a starter policy from a server's tool list.
    ///
    /// Each tool is classified read, write, execute, destructive or financial from its MCP
    /// annotations, else its name and description, and gets the rule of its class.
    Init {
        /// A server's `tools/list` result (`{"tools": [...]}` or a bare array).
        #[arg(long, value_name = "TOOLS.json")]
        tools: PathBuf,
        /// Write the policy here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Require a human's approval for destructive tools instead of hiding them.
        #[arg(long)]
        approve_destructive: bool,
    },
}

/// How `validate` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `FILE:LINE:COL: error: MESSAGE (at POINTER)`, with the source line and a caret.
    Text,
    /// One JSON array of findings.
    Json,
}

/// Exit status for a usage or I/O error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { policies, tools, format, deny_warnings } => {
            validate::run(&policies, tools.as_deref(), format == Format::Json, deny_warnings)
        }
        Command::Check { policy, calls } => check::run(&policy, calls.as_deref()),
        Command::Test { policy, cases } => test_cmd::run(&policy, &cases),
        Command::Schema => {
            print!("{}", mcp_policy::Policy::json_schema_text());
            Ok(0)
        }
        Command::Init { tools, out, approve_destructive } => {
            init::run(&tools, out.as_deref(), approve_destructive)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!(
                "{}: {message}",
                report::paint("error", report::RED, report::stderr_is_terminal())
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}
