//! # mcp-policy-gateway
//!
//! A process between an MCP client and an MCP server, written in any language, that decides
//! every tool call with an [`mcp-policy`](mcp_policy) policy before it reaches the server. The
//! engine runs in process.
//!
//! The crate is laid out so that the transport-agnostic core is apart from the transports:
//!
//! - [`relay`]: one client session relayed to one upstream, as JSON values (over stdio, an
//!   allowed call and its answer from their lines, see [`raw`]), with `tools/list` and
//!   `tools/call` intercepted;
//! - [`guard`]: the policy decisions and the refusals the client sees;
//! - [`raw`]: the two messages of an allowed call over stdio, read and written from their lines;
//! - [`rounds`]: the `input_required` rounds kept between a call and its retry;
//! - [`transport`]: the channels a transport hands the relay, and line framing;
//! - [`downstream`] and [`upstream`]: the transports (stdio and streamable HTTP);
//! - [`decision_log`], [`reload`], [`cli`]; over HTTP [`auth`], [`origin`], [`metrics`], and
//!   [`admin`] with [`approvals`] (the core's pending approvals, served out of band).
//!
//! See [`docs/gateway.md`] for the command and its behaviour.
//!
//! [`docs/gateway.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/gateway.md
#![forbid(unsafe_code)]

pub mod cli;
pub mod decision_log;
pub mod downstream;
pub mod guard;
pub mod jsonrpc;
pub mod lines;
pub mod raw;
pub mod relay;
pub mod reload;
pub mod rounds;
pub mod spin;
pub mod transport;
pub mod upstream;

// HTTP (branch `http`).
pub mod admin;
pub mod approvals;
pub mod auth;
pub mod http_main;
pub mod metrics;
pub mod origin;

use std::sync::Arc;
use std::time::Duration;

use mcp_policy::Evaluator;
use nix::sys::signal::Signal;

use crate::cli::{Cli, ModeArg};
use crate::decision_log::DecisionLog;
use crate::guard::{Guard, Mode};
use crate::relay::{Relay, RelayConfig, RelayEnd};
use crate::reload::Reloader;

/// Exit code for a usage or configuration error (bad policy, log not writable).
pub const EXIT_CONFIG: i32 = 2;
/// Exit code when the upstream command cannot be started.
pub const EXIT_SPAWN: i32 = 127;

/// The spin's default budget, in microseconds (`--spin`).
pub const DEFAULT_SPIN_MICROS: u64 = 200;

/// Whether the gateway serves one client over stdio in front of a command upstream (not the
/// listener, nor an HTTP upstream, nor counters in Redis): then its relay spins itself before
/// waiting (see [`spin::for_lines`]), and the runtime need not spin before it sleeps.
#[must_use]
pub fn relay_spins(cli: &Cli) -> bool {
    cli.listen.is_none() && cli.upstream.is_none() && cli.redis.is_none()
}

/// How long the upstream gets to exit by itself once the client has gone (its stdin is closed).
const UPSTREAM_GRACE: Duration = Duration::from_secs(3);

/// The threads serving `--listen` when `--threads` is not given: half the cores the process may
/// use, at least one. The gateway's clients and upstreams (a child process per session over
/// stdio) usually run on the same machine and need the rest; on two cores this is one thread,
/// on which a call's request, relay and upstream exchange pass work to each other without
/// waking another thread (docs/performance.md has the measurement).
#[must_use]
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Runs the gateway as the command line says, serving MCP on stdin/stdout; returns the exit
/// code: the upstream's own, or [`EXIT_CONFIG`] / [`EXIT_SPAWN`] when it could not start.
pub async fn run(cli: Cli) -> i32 {
    // HTTP on either side (branch `http`): see `http_main`.
    if !relay_spins(&cli) {
        return http_main::run(cli).await;
    }
    let Some((text, policy)) = reload::initial_policy(&cli.policy) else { return EXIT_CONFIG };
    let log = match &cli.decision_log {
        Some(target) => match DecisionLog::open(target, cli.decision_log_queue, Default::default())
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mcp-policy-gateway: cannot open the decision log `{target}`: {e}");
                return EXIT_CONFIG;
            }
        },
        None => DecisionLog::disabled(),
    };
    let mode = match cli.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Monitor => Mode::Monitor,
    };
    let evaluator = Arc::new(Evaluator::new(policy).with_mode(mode.core()));
    let guard = Arc::new(Guard::new(evaluator.clone(), cli.grant.clone(), mode));

    let (upstream, mut child) = match upstream::stdio::spawn(&cli.command) {
        Ok(x) => x,
        Err(e) => {
            let shown = cli.command.first().map(|c| c.to_string_lossy().into_owned());
            eprintln!(
                "mcp-policy-gateway: cannot start the upstream `{}`: {e}",
                shown.unwrap_or_default()
            );
            return EXIT_SPAWN;
        }
    };
    let reloader = Reloader::new(evaluator, cli.policy.clone(), text).spawn(cli.policy_poll);
    let (client, written) = downstream::stdio::serve();
    let session = format!("stdio-{}", uuid::Uuid::new_v4());

    let config = RelayConfig {
        session: Some(session),
        upstream_timeout: cli.upstream_timeout,
        answer_after_client_eof: true,
        spin: Duration::from_micros(cli.spin.unwrap_or(DEFAULT_SPIN_MICROS)),
        ..RelayConfig::default()
    };
    let log = Arc::new(log);
    let relay = Relay::run(guard, log.clone(), config, client, upstream);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let end = tokio::select! {
        end = relay => Some(end),
        _ = async { match &mut term { Some(t) => { t.recv().await; } None => std::future::pending().await } } => None,
        _ = tokio::signal::ctrl_c() => None,
    };
    reloader.abort();
    let status = match end {
        Some(RelayEnd::UpstreamClosed) => {
            let s = child.wait_timeout(Duration::from_secs(1)).await;
            let s2 = child.shutdown(Duration::ZERO).await;
            s.or(s2)
        }
        Some(RelayEnd::ClientClosed) => child.shutdown(UPSTREAM_GRACE).await,
        None => {
            child.signal(Signal::SIGTERM);
            child.shutdown(Duration::from_secs(2)).await
        }
    };
    // What is left for the client (errors for its pending requests) is written before exiting.
    // Stdin and stdout are given back as they were (blocking) either way.
    written.wait(Duration::from_secs(2)).await;
    // The decision log's last lines reach its sink before the process exits (at most 2 s).
    log.finish();
    match status {
        Some(s) => upstream::stdio::exit_code(s),
        None => 1,
    }
}
