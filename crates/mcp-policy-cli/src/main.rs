//! `mcp-policy`: validate, check, test and write MCP tool-call policies.
//!
//! See [`docs/cli.md`] for every command, its exit codes and an example session.
//!
//! Every command returns a [`Result`]: its exit status, or a [`Failure`]. Only [`main`] prints a
//! failure and picks the exit status for it (ripgrep's way). Standard output goes through one
//! locked, buffered writer; when its reader goes away (`mcp-policy ... | head -1`), the command
//! stops and the process exits quietly with status 0.
//!
//! [`docs/cli.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/cli.md

mod check;
mod classify;
mod explain;
mod init;
mod locate;
mod mcp_client;
mod replay;
mod report;
mod test_cmd;
mod time;
mod tools;
mod validate;

use std::io::{self, BufWriter, Write};
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
    /// Findings and the summary go to standard error; with `--format json`, the findings go to
    /// standard output as one JSON array. Exit status: 0 valid, 1 invalid (or warnings with
    /// --deny-warnings), 2 usage or I/O error.
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
    /// `tool` is required, and a field outside this list is an error. `at` (Unix seconds or
    /// RFC 3339, from 1970 to the end of the year 2500) drives the clock, so a replay is
    /// deterministic. Each output line carries the `line` of its input line. Exit status: 0, or
    /// 1 when a line was malformed; 2 on I/O errors.
    Check {
        /// The policy file.
        #[arg(value_name = "POLICY")]
        policy: PathBuf,
        /// The calls, one JSON object a line; standard input when absent.
        #[arg(value_name = "CALLS.jsonl")]
        calls: Option<PathBuf>,
        /// At the end, print the decisions per tool and per rule to standard error.
        #[arg(long)]
        summary: bool,
    },
    /// Explain how the policy decides one call: every step, every condition, every counter.
    ///
    /// The call is one JSON object in the shape `check` reads on each line ({"tool",
    /// "arguments", "grant", "session", "context", "at", "approved"}), decided on fresh counters
    /// at `at` (now when absent); nothing is charged. Conditions show their truth value and the
    /// JSON type of the value they read, never the value. Exit status: 0 explained (whatever
    /// the decision), 1 the call is malformed, 2 usage or I/O error.
    Explain {
        /// The policy file.
        #[arg(value_name = "POLICY")]
        policy: PathBuf,
        /// The call, one JSON object; standard input when absent.
        #[arg(value_name = "CALL.json")]
        call: Option<PathBuf>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
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
    /// The tools come from a `tools/list` result (`--tools FILE`) or from a stdio MCP server
    /// that `init` starts (`--server -- COMMAND [ARGS...]`). Each tool is classified read,
    /// write, execute, destructive or financial from its MCP annotations, its name and its
    /// description (the most dangerous wins), and gets the rule of its class.
    Init {
        /// A server's `tools/list` result (`{"tools": [...]}` or a bare array).
        #[arg(
            long,
            value_name = "TOOLS.json",
            required_unless_present = "server",
            conflicts_with = "server"
        )]
        tools: Option<PathBuf>,
        /// Start the stdio MCP server given after `--` and ask it for its tools.
        #[arg(long, requires = "command")]
        server: bool,
        /// The server's command and arguments (after `--`).
        #[arg(last = true, value_name = "COMMAND", requires = "server")]
        command: Vec<String>,
        /// Seconds to wait for each answer of the server.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
        /// Also write the server's tool list here (for `validate --tools`).
        #[arg(long, value_name = "FILE", requires = "server")]
        save_tools: Option<PathBuf>,
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
    /// `FILE:LINE:COL: error: MESSAGE (at POINTER)`, with the source line and a caret, on
    /// standard error.
    Text,
    /// One JSON array of findings on standard output.
    Json,
}

/// Exit status for a usage or I/O error.
const EXIT_USAGE: u8 = 2;

/// Why a command stopped before its end.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A usage or input error, with the message to print (exit status 2).
    Usage(String),
    /// Writing the output failed (a closed pipe ends the process quietly with status 0).
    Output(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Usage(message)
    }
}

/// What a command gives back: its exit status, or why it stopped.
pub(crate) type Result<T> = std::result::Result<T, Failure>;

/// Standard output, locked and buffered, as every command writes it.
pub(crate) type Out<'a> = dyn Write + 'a;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = run(cli.command, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away: nobody wants the rest, and nothing went wrong.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            // The buffer may hold output that came before the failure; keep it if we can.
            let _ = out.flush();
            let message = match failure {
                Failure::Usage(message) => message,
                Failure::Output(e) => format!("cannot write the output: {e}"),
            };
            report::error_line(&message);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(command: Command, out: &mut Out<'_>) -> Result<u8> {
    match command {
        Command::Validate { policies, tools, format, deny_warnings } => {
            validate::run(&policies, tools.as_deref(), format == Format::Json, deny_warnings, out)
        }
        Command::Check { policy, calls, summary } => {
            check::run(&policy, calls.as_deref(), summary, out)
        }
        Command::Explain { policy, call, json } => {
            explain::run(&policy, call.as_deref(), json, out)
        }
        Command::Test { policy, cases } => test_cmd::run(&policy, &cases, out),
        Command::Schema => {
            out.write_all(mcp_policy::Policy::json_schema_text().as_bytes())?;
            Ok(0)
        }
        Command::Init {
            tools,
            server: _,
            command,
            timeout,
            save_tools,
            out: out_path,
            approve_destructive,
        } => {
            let source = match tools {
                Some(path) => init::Source::File(path),
                None => init::Source::Server {
                    command,
                    timeout: std::time::Duration::from_secs(timeout.max(1)),
                    save_tools,
                },
            };
            init::run(source, out_path.as_deref(), approve_destructive, out)
        }
    }
}
