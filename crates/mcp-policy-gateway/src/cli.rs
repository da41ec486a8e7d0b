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

    /// The most bytes of decision-log lines waiting for a slow sink (at least 65536). The log is
    /// written by a thread of its own, so that a sink that stalls never holds up a call; past
    /// this, lines are dropped and counted (stderr and /metrics say so).
    #[arg(long, value_name = "BYTES", default_value_t = crate::decision_log::DEFAULT_QUEUE_BYTES,
        value_parser = parse_queue_bytes, requires = "decision_log")]
    pub decision_log_queue: usize,

    /// How often the policy file is looked at for changes, in seconds; 0 turns polling off
    /// (SIGHUP still reloads).
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_poll)]
    pub policy_poll: std::time::Duration,

    /// Before the gateway's thread goes to sleep, it polls the connections it waits on (the
    /// client's and the upstream's pipes or sockets) for up to MICROS microseconds (0 to 10000;
    /// 0: it sleeps at once). Lowers the latency a call gains where waking a sleeping thread is
    /// slow (virtual machines), for at most MICROS of CPU time per sleep. Default: 200 over
    /// stdio and for the HTTP listener on one thread; never with `--threads` above 1. Over stdio
    /// with a command upstream, the relay itself spins before it waits, reading the pipes as
    /// data comes. (`--stdio-spin` is another name for it.)
    #[arg(long, alias = "stdio-spin", value_name = "MICROS",
        value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub spin: Option<u64>,

    /// Give up on a request the upstream has not answered after SECS seconds: the client gets
    /// an error and the upstream a cancellation (default: wait as long as it takes).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub upstream_timeout: Option<std::time::Duration>,

    /// The upstream MCP server: a command that speaks MCP over its stdin and stdout. It inherits
    /// the gateway's environment, and its stderr passes through.
    #[arg(last = true, required_unless_present = "upstream", value_name = "COMMAND [ARGS...]")]
    pub command: Vec<OsString>,

    // ---- HTTP (branch `http`; see docs/gateway.md "HTTP deployment") ----
    /// Serve MCP streamable HTTP at http://ADDR/mcp (with /healthz and /metrics) instead of
    /// stdin/stdout. ADDR must be a loopback address unless --allow-remote is given.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    /// The threads serving --listen (default: half the cores, at least one). With one, every
    /// session's request, relay and upstream exchange run on one thread and hand work to each
    /// other without waking another thread; more threads serve more sessions at once on a
    /// machine with cores to spare.
    #[arg(long, value_name = "N", requires = "listen")]
    pub threads: Option<std::num::NonZeroUsize>,

    /// Let --listen bind to an address that is not loopback (behind TLS and authentication).
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,

    /// Also accept this `Host` header (name or name:port); repeatable. Loopback names are
    /// always accepted on a loopback listener.
    #[arg(long = "allowed-host", value_name = "HOST", requires = "listen")]
    pub allowed_hosts: Vec<String>,

    /// Also accept requests whose `Origin` is this (`scheme://host[:port]`); repeatable. Requests
    /// without an `Origin` (non-browser clients) are accepted.
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "listen")]
    pub allowed_origins: Vec<String>,

    /// The upstream MCP server at this streamable-HTTP URL, instead of a command.
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    pub upstream: Option<String>,

    /// HTTP: require `Authorization: Bearer <JWT>` signed with HS256 by the secret in FILE.
    #[arg(long, value_name = "FILE", requires = "listen", conflicts_with_all = ["jwt_public_key_file", "trusted_header"])]
    pub jwt_secret_file: Option<std::path::PathBuf>,

    /// HTTP: require `Authorization: Bearer <JWT>` signed with RS256 or ES256 by the key whose
    /// public PEM is in FILE.
    #[arg(long, value_name = "FILE", requires = "listen", conflicts_with = "trusted_header")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// The JWT claim that holds the grant.
    #[arg(long, value_name = "NAME", default_value = "sub")]
    pub grant_claim: String,

    /// The `aud` a JWT must carry.
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,

    /// The `iss` a JWT must carry.
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,

    /// HTTP: the grant is the value of this request header, set by an authenticating proxy in
    /// front of the gateway. Anyone who can reach the gateway directly can claim any grant.
    #[arg(long, value_name = "NAME", requires = "listen")]
    pub trusted_header: Option<String>,

    /// Keep counters in Redis at URL (`redis://host:port/db`): replicas share one count.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// HTTP: enable `GET /approvals` and `POST /approvals/{id}` behind
    /// `Authorization: Bearer <the token in FILE>`.
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// HTTP: the most MCP sessions at once (each has its own upstream process for a command).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_sessions: usize,

    /// HTTP: a session without any request for this many seconds is ended.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub session_idle_timeout: u64,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds"))
}

fn parse_queue_bytes(s: &str) -> Result<usize, String> {
    let min = crate::decision_log::MIN_QUEUE_BYTES;
    s.parse::<usize>()
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| format!("`{s}` is not a number of bytes of at least {min}"))
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
    fn the_decision_log_queue_has_a_default_a_minimum_and_needs_a_log() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["mcp-policy-gateway", "--policy", "p.json"];
            args.extend_from_slice(extra);
            args.extend(["--", "server"]);
            Cli::try_parse_from(args)
        };
        let cli = parse(&["--decision-log", "-"]).unwrap();
        assert_eq!(cli.decision_log_queue, crate::decision_log::DEFAULT_QUEUE_BYTES);
        let cli = parse(&["--decision-log", "-", "--decision-log-queue", "65536"]).unwrap();
        assert_eq!(cli.decision_log_queue, 65536);
        let e = parse(&["--decision-log", "-", "--decision-log-queue", "65535"]).unwrap_err();
        assert!(
            e.to_string().contains("`65535` is not a number of bytes of at least 65536"),
            "{e}"
        );
        assert!(parse(&["--decision-log-queue", "65536"]).is_err());
    }

    /// The defaults and ranges docs/gateway.md and docs/gateway-http.md give.
    #[test]
    fn the_documented_defaults_and_ranges() {
        use std::time::Duration;
        let parse = |extra: &[&str]| {
            let mut args = vec!["mcp-policy-gateway", "--policy", "p.json"];
            args.extend_from_slice(extra);
            args.extend(["--", "server"]);
            Cli::try_parse_from(args)
        };
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.grant, "");
        assert_eq!(cli.mode, ModeArg::Enforce);
        assert_eq!(cli.policy_poll, Duration::from_millis(500));
        assert_eq!(cli.upstream_timeout, None, "wait as long as it takes");
        assert_eq!(cli.max_sessions, 64);
        assert_eq!(cli.session_idle_timeout, 1800);
        assert_eq!(cli.grant_claim, "sub");
        assert_eq!(crate::decision_log::DEFAULT_QUEUE_BYTES, 4_194_304);

        let cli = parse(&["--policy-poll", "0.25", "--upstream-timeout", "1.5"]).unwrap();
        assert_eq!(cli.policy_poll, Duration::from_millis(250));
        assert_eq!(cli.upstream_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(parse(&["--policy-poll", "0"]).unwrap().policy_poll, Duration::ZERO);
        for bad in ["-1", "x", "NaN", "inf"] {
            assert!(parse(&["--policy-poll", bad]).is_err(), "--policy-poll {bad}");
            assert!(parse(&["--upstream-timeout", bad]).is_err(), "--upstream-timeout {bad}");
        }

        assert_eq!(parse(&["--spin", "0"]).unwrap().spin, Some(0));
        assert_eq!(parse(&["--spin", "10000"]).unwrap().spin, Some(10_000));
        assert!(parse(&["--spin", "10001"]).is_err());
        assert_eq!(parse(&["--stdio-spin", "50"]).unwrap().spin, Some(50), "another name");
    }

    #[test]
    fn requires_a_command() {
        assert!(Cli::try_parse_from(["mcp-policy-gateway", "--policy", "p.json"]).is_err());
    }
}
