//! The gateway when HTTP is on either side (`--listen`, `--upstream URL`) or counters are in
//! Redis (`--redis`): the listener, its sessions, and the stdio client in front of an HTTP
//! upstream.

use std::sync::Arc;
use std::time::Duration;

use mcp_policy::{AsyncCounterStore, Evaluator, MemoryStore};
use mcp_policy_redis::RedisStore;

use crate::admin::AdminApi;
use crate::auth::{Authenticator, Jwt, JwtOptions};
use crate::cli::{Cli, ModeArg};
use crate::decision_log::DecisionLog;
use crate::downstream::http::{Config, Server, UpstreamSpec};
use crate::guard::{Guard, Mode};
use crate::metrics::{MeteredStore, Metrics};
use crate::origin::OriginRule;
use crate::relay::{Relay, RelayConfig, RelayEnd};
use crate::reload::{self, ReloadOutcome, Reloader};
use crate::transport::UpstreamTx;
use crate::{EXIT_CONFIG, EXIT_SPAWN};

/// Runs the gateway with HTTP on either side, or Redis counters; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    let Some((text, policy)) = reload::initial_policy(&cli.policy) else { return EXIT_CONFIG };
    let metrics = Arc::new(Metrics::new());
    match &cli.redis {
        Some(url) => {
            let store = match RedisStore::connect(url).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mcp-policy-gateway: cannot connect to Redis at `{url}`: {e}");
                    return EXIT_CONFIG;
                }
            };
            let store = MeteredStore::new(store, metrics.clone());
            serve(cli, Evaluator::with_store(policy, store), text, metrics).await
        }
        None => {
            let store = MeteredStore::new(MemoryStore::new(), metrics.clone());
            serve(cli, Evaluator::with_store(policy, store), text, metrics).await
        }
    }
}

fn authenticator(cli: &Cli) -> Result<Authenticator, String> {
    let options = JwtOptions {
        grant_claim: &cli.grant_claim,
        audience: cli.audience.as_deref(),
        issuer: cli.issuer.as_deref(),
    };
    if let Some(path) = &cli.jwt_secret_file {
        return Ok(Authenticator::Jwt(Box::new(Jwt::from_secret_file(path, options)?)));
    }
    if let Some(path) = &cli.jwt_public_key_file {
        return Ok(Authenticator::Jwt(Box::new(Jwt::from_public_key_file(path, options)?)));
    }
    if let Some(name) = &cli.trusted_header {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        return Ok(Authenticator::Header(name));
    }
    if cli.audience.is_some() || cli.issuer.is_some() {
        return Err(
            "--audience and --issuer need --jwt-secret-file or --jwt-public-key-file".into()
        );
    }
    Ok(Authenticator::Fixed(cli.grant.clone()))
}

async fn serve<S: AsyncCounterStore + 'static>(
    cli: Cli,
    evaluator: Evaluator<S>,
    text: String,
    metrics: Arc<Metrics>,
) -> i32 {
    let log = match &cli.decision_log {
        Some(target) => {
            match DecisionLog::open(target, cli.decision_log_queue, metrics.decision_log_dropped())
            {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("mcp-policy-gateway: cannot open the decision log `{target}`: {e}");
                    return EXIT_CONFIG;
                }
            }
        }
        None => DecisionLog::disabled(),
    };
    let log = Arc::new(log.with_observer(metrics.observer()));
    let mode = match cli.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Monitor => Mode::Monitor,
    };
    let evaluator = Arc::new(evaluator.with_mode(mode.core()));
    let counted = metrics.clone();
    let reloader = Reloader::new(evaluator.clone(), cli.policy.clone(), text).spawn_with(
        cli.policy_poll,
        move |outcome| match outcome {
            ReloadOutcome::Reloaded(_) => counted.reload(true),
            ReloadOutcome::Refused => counted.reload(false),
            ReloadOutcome::Unchanged => {}
        },
    );
    let upstream = match &cli.upstream {
        Some(url) => UpstreamSpec::Url(url.clone()),
        None => UpstreamSpec::Command(cli.command.clone()),
    };
    let code = match cli.listen {
        Some(addr) => listen(&cli, addr, evaluator, mode, log.clone(), upstream, metrics).await,
        None => stdio_client(&cli, evaluator, mode, log.clone(), upstream).await,
    };
    reloader.abort();
    // The decision log's last lines reach its sink before the process exits (at most 2 s).
    log.finish();
    code
}

/// The client on stdin/stdout, the upstream over HTTP (or a command, with Redis counters).
async fn stdio_client<S: AsyncCounterStore + 'static>(
    cli: &Cli,
    evaluator: Arc<Evaluator<S>>,
    mode: Mode,
    log: Arc<DecisionLog>,
    upstream: UpstreamSpec,
) -> i32 {
    let (link, child) = match &upstream {
        UpstreamSpec::Url(url) => match crate::upstream::http::connect(url) {
            Ok((l, h)) => (l, Err(h)),
            Err(e) => {
                eprintln!("mcp-policy-gateway: {e}");
                return EXIT_CONFIG;
            }
        },
        UpstreamSpec::Command(cmd) => match crate::upstream::stdio::spawn(cmd) {
            Ok((l, c)) => (l, Ok(c)),
            Err(e) => {
                eprintln!("mcp-policy-gateway: cannot start the upstream: {e}");
                return EXIT_SPAWN;
            }
        },
    };
    let guard = Arc::new(Guard::new(evaluator, cli.grant.clone(), mode));
    let (client, writer) = crate::downstream::stdio::serve();
    let session = format!("stdio-{}", uuid::Uuid::new_v4());
    let config = RelayConfig {
        session: Some(session),
        upstream_timeout: cli.upstream_timeout,
        answer_after_client_eof: true,
        ..RelayConfig::default()
    };
    // When the client closes its input, the relay closes the upstream's (its link's sender):
    // a command upstream sees the end of its stdin and answers what it has; an HTTP upstream's
    // connection would end its session and drop the requests in flight with it. Its input is
    // kept open here until the relay is done, so that those requests are answered.
    let http_input = match (&link.tx, &child) {
        (UpstreamTx::Channel(tx), Err(_)) => Some(tx.clone()),
        _ => None,
    };
    let relay = Relay::run(guard, log, config, client, link);
    let end = tokio::select! {
        end = relay => Some(end),
        _ = terminated() => None,
    };
    drop(http_input);
    let code = match child {
        Ok(mut c) => {
            let grace = if end == Some(RelayEnd::ClientClosed) {
                Duration::from_secs(3)
            } else {
                Duration::ZERO
            };
            match c.shutdown(grace).await {
                Some(s) => crate::upstream::stdio::exit_code(s),
                None => 1,
            }
        }
        Err(h) => {
            h.finish(Duration::from_secs(3)).await;
            i32::from(end != Some(RelayEnd::ClientClosed))
        }
    };
    writer.wait(Duration::from_secs(2)).await;
    code
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = async { match &mut term { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

async fn listen<S: AsyncCounterStore + 'static>(
    cli: &Cli,
    addr: std::net::SocketAddr,
    evaluator: Arc<Evaluator<S>>,
    mode: Mode,
    log: Arc<DecisionLog>,
    upstream: UpstreamSpec,
    metrics: Arc<Metrics>,
) -> i32 {
    let loopback = addr.ip().is_loopback();
    if !loopback && !cli.allow_remote {
        eprintln!(
            "mcp-policy-gateway: refusing to listen on `{addr}`, which is not a loopback address: \
             anyone who can reach it could call the upstream's tools. Pass --allow-remote (with \
             --jwt-secret-file, --jwt-public-key-file or --trusted-header, behind TLS) to do it."
        );
        return EXIT_CONFIG;
    }
    let auth = match authenticator(cli) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcp-policy-gateway: {e}");
            return EXIT_CONFIG;
        }
    };
    if !loopback && !auth.authenticates() {
        eprintln!(
            "mcp-policy-gateway: WARNING: listening on `{addr}` without authentication: every \
             client gets the grant `{}`",
            cli.grant
        );
    }
    let admin = match &cli.admin_token_file {
        Some(path) => match AdminApi::from_token_file(path, evaluator.clone()) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("mcp-policy-gateway: {e}");
                return EXIT_CONFIG;
            }
        },
        None => None,
    };
    let server = Server::new(Config {
        evaluator,
        mode,
        log,
        auth,
        origin: OriginRule::new(loopback, &cli.allowed_hosts, &cli.allowed_origins),
        upstream,
        metrics,
        admin,
        max_sessions: cli.max_sessions,
        upstream_timeout: cli.upstream_timeout,
        idle_timeout: Duration::from_secs(cli.session_idle_timeout.max(1)),
    });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp-policy-gateway: cannot listen on `{addr}`: {e}");
            return EXIT_CONFIG;
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
    eprintln!("mcp-policy-gateway: serving MCP at http://{local}/mcp");
    // Without TCP_NODELAY, a response written in pieces (headers, then SSE events) waits for
    // the client's delayed ACK: about 40 ms a call on Linux.
    // Each connection is watched by the spin (`--spin`), until it closes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("mcp-policy-gateway: cannot set TCP_NODELAY on a connection: {e}");
        }
        crate::spin::watch(std::os::fd::AsFd::as_fd(tcp));
    });
    let reaper = tokio::spawn(server.clone().reap_idle());
    let app = server.router();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    terminated().await;
    eprintln!("mcp-policy-gateway: stopping: ending {} session(s)", server.session_count());
    server.shutdown(Duration::from_secs(8)).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    reaper.abort();
    0
}
