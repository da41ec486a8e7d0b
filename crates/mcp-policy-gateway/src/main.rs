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
    // The HTTP listener serves many sessions at once: `--threads` worker threads, by default
    // half the cores (the clients and the upstreams of a gateway usually share its machine);
    // with one, the runtime is the current thread's, as over stdio.
    let threads = match (cli.listen, cli.threads) {
        (None, _) => 1,
        (Some(_), Some(n)) => n.get(),
        (Some(_), None) => mcp_policy_gateway::default_threads(),
    };
    let mut builder = if threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    // A short spin before the thread sleeps (see `spin`): only where one thread runs everything
    // (with several workers, the idle ones would spin for nothing), and not where the relay
    // spins itself.
    if threads == 1 && !mcp_policy_gateway::relay_spins(&cli) {
        let spin = cli.spin.unwrap_or(mcp_policy_gateway::DEFAULT_SPIN_MICROS);
        let budget = std::time::Duration::from_micros(spin);
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
    // Exit at once: a read of stdin still pending must not hold the process. (`run` has
    // written the decision log's last lines, or given up on a stalled sink after 2 s.)
    std::process::exit(code);
}
