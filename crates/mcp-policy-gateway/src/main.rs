//! `mcp-policy-gateway`: see [`docs/gateway.md`].
//!
//! [`docs/gateway.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/gateway.md
#![forbid(unsafe_code)]

use clap::Parser;
use mcp_policy_gateway::cli::Cli;

fn main() {
    let cli = Cli::parse();
    // One session over stdio: one thread runs the relay, the upstream's pipes and (when they
    // are pipes or sockets) the gateway's own stdin and stdout, so that a call crosses no thread.
    // The HTTP listener serves many sessions at once: a worker thread per core.
    let mut builder = if cli.listen.is_some() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    if cli.listen.is_none() {
        let budget = std::time::Duration::from_micros(cli.stdio_spin);
        if !budget.is_zero() {
            builder.on_thread_park(move || mcp_policy_gateway::spin::before_sleep(budget));
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcp-policy-gateway: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(mcp_policy_gateway::run(cli));
    // Exit at once: a read of stdin still pending must not hold the process.
    std::process::exit(code);
}
