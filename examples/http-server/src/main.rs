//! An MCP server over streamable HTTP whose callers are named by a verified bearer token, every
//! call guarded by a policy file (see the library's documentation for how the pieces fit).
//!
//! ```text
//! http-server serve POLICY.json SECRET_FILE [ADDR]      (ADDR: 127.0.0.1:8080)
//! http-server token SECRET_FILE SUBJECT [SCOPE...]      (prints a token valid for an hour)
//! ```
//!
//! `SECRET_FILE` holds the HS256 secret (at least 32 bytes; one trailing newline is ignored).
//! The MCP endpoint is `http://ADDR/mcp`; rmcp accepts only loopback `Host` names by default.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http_server::{Claims, sign, start};
use mcp_policy::Policy;

fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let mut secret =
        std::fs::read(path).map_err(|e| format!("cannot read the secret `{path}`: {e}"))?;
    if secret.last() == Some(&b'\n') {
        secret.pop();
    }
    Ok(secret)
}

async fn serve(args: &[String]) -> Result<(), String> {
    let [policy_path, secret_path, rest @ ..] = args else {
        return Err(usage());
    };
    let addr: SocketAddr = match rest {
        [] => SocketAddr::from(([127, 0, 0, 1], 8080)),
        [addr] => addr.parse().map_err(|e| format!("bad address `{addr}`: {e}"))?,
        _ => return Err(usage()),
    };
    let policy = Policy::from_path(policy_path).map_err(|e| format!("{policy_path}: {e}"))?;
    let running = start(policy, &read_secret(secret_path)?, addr).await?;
    eprintln!("serving MCP on {} (Ctrl-C stops)", running.url());
    tokio::signal::ctrl_c().await.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    running.stop().await.map_err(|e| format!("the server failed: {e}"))
}

fn token(args: &[String]) -> Result<(), String> {
    let [secret_path, subject, scopes @ ..] = args else {
        return Err(usage());
    };
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let claims = Claims::new(subject, &scopes, Duration::from_secs(3600));
    println!("{}", sign(&read_secret(secret_path)?, &claims)?);
    Ok(())
}

fn usage() -> String {
    "usage: http-server serve POLICY.json SECRET_FILE [ADDR]\n       \
     http-server token SECRET_FILE SUBJECT [SCOPE...]"
        .to_owned()
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((command, rest)) if command == "serve" => serve(rest).await,
        Some((command, rest)) if command == "token" => token(rest),
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
