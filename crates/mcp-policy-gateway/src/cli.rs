//! The command line. The spellings are those of issue 12: users script them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// `mcp-policy-gateway --policy FILE [options] -- COMMAND [ARGS...]`
#[derive(Debug, Parser)]
#[command(
    name = "mcp-policy-gateway",
    version,
    about = "Put any MCP server behind an mcp-policy policy: every tool call is decided before it \
             reaches the server",
    after_help = "Example:\n  mcp-policy-gateway --policy policy.json -- npx -y \
                  @modelcontextprotocol/server-filesystem /srv/data"
)]
pub struct Cli {
    /// The policy file (JSON). Reloaded when it changes and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,

    /// The grant of every call (the caller's credential id as the policy sees it).
    #[arg(long, value_name = "NAME", default_value = "")]
    pub grant: String,

    /// `monitor`: decide and log every call, but never refuse one.
    #[arg(long, value_enum, default_value_t = ModeArg::Enforce, value_name = "enforce|monitor")]
    pub mode: ModeArg,

    /// Write one JSON object per decision to PATH (appended), or with `-` to standard error
    /// (standard output carries MCP over stdio).
    #[arg(long, value_name = "PATH|-")]
    pub decision_log: Option<String>,

    /// How often the policy file is looked at for changes, in seconds; 0 turns polling off
    /// (SIGHUP still reloads).
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_poll)]
    pub policy_poll: std::time::Duration,

    /// Give up on a request the upstream has not answered after SECS seconds: the client gets
    /// an error and the upstream a cancellation (default: wait as long as it takes).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub upstream_timeout: Option<std::time::Duration>,

    /// The upstream MCP server: a command that speaks MCP over its stdin and stdout. It inherits
    /// the gateway's environment, and its stderr passes through.
    #[arg(last = true, required = true, value_name = "COMMAND [ARGS...]")]
    pub command: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds"))
}

fn parse_poll(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a number of seconds (0 or more)"))
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Refuse what the policy refuses.
    Enforce,
    /// Decide and log, never refuse.
    Monitor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_spellings() {
        let cli = Cli::try_parse_from([
            "mcp-policy-gateway",
            "--policy",
            "p.json",
            "--grant",
            "alice",
            "--mode",
            "monitor",
            "--decision-log",
            "-",
            "--",
            "server",
            "--flag",
        ])
        .unwrap();
        assert_eq!(cli.policy, PathBuf::from("p.json"));
        assert_eq!(cli.grant, "alice");
        assert_eq!(cli.mode, ModeArg::Monitor);
        assert_eq!(cli.decision_log.as_deref(), Some("-"));
        assert_eq!(cli.command, vec![OsString::from("server"), OsString::from("--flag")]);
    }

    #[test]
    fn requires_a_command() {
        assert!(Cli::try_parse_from(["mcp-policy-gateway", "--policy", "p.json"]).is_err());
    }
}
