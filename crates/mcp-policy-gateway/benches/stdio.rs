//! The latency a `tools/call` gains through the gateway over stdio: the same trivial upstream
//! (this executable, started with `MCP_POLICY_BENCH_UPSTREAM=1`, answering at once) called
//! directly and through `mcp-policy-gateway`, by a client writing and reading lines on pipes.
//! An allowed call with one limit, as in production.
//!
//! `cargo bench -p mcp-policy-gateway --bench stdio` prints criterion's figures, then p50 and
//! p99 of 20,000 sequential calls each way, and the CPU time the gateway used per call: as it
//! runs by default (polling its pipes for up to 200 µs before sleeping), and with
//! `--stdio-spin 0` (sleeping at once).
//! Then every path again, in alternating blocks of 500 calls, so that the machine's drift over
//! the run weighs on all alike, with two more: the floor of any process in between, a relay
//! (this executable, started with `MCP_POLICY_BENCH_RELAY=MICROS`) that copies bytes both ways
//! and does nothing else, polling its two inputs for up to 200 µs before sleeping as the
//! gateway does; the same relay sleeping at once; the same copy on the gateway's async runtime
//! (`MCP_POLICY_BENCH_TOKIO_RELAY=1`); and the gateway's own transports with nothing
//! in between (this executable, started with `MCP_POLICY_BENCH_TRANSPORTS=1`: the gateway's
//! stdio client link and command upstream link, on one thread with the same spin, each line
//! relayed unparsed, nothing decided), which tells the relay's policy work from the cost of its
//! I/O.
//! `MCP_POLICY_BENCH_BASELINE_BIN=PATH` adds a row for another build of the gateway (an older
//! commit, say), measured in the same run; `MCP_POLICY_BENCH_FLOOR_WORK=2,5` adds rows for the
//! floor relay spending that many microseconds on each message before writing it on (what a
//! relay's own time costs a call). `MCP_POLICY_BENCH_CPU=0` runs every process on CPU 0 (the
//! paths then differ only by the work and process switches of what is in between), and
//! `MCP_POLICY_BENCH_ONLY=gateway|floor|direct` measures one path alone, for a profiler.
//!
//! On a virtual machine, where the kernel runs the client and the upstream (on one vCPU, or on
//! two) weighs more than anything a process in between does: a wake-up across vCPUs costs tens
//! of microseconds. The direct path's figure moves between those two states from one run to the
//! next; the floor relay, measured alongside, shows what any process in between costs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/http_support/mod.rs"]
mod http_support;
#[path = "../tests/trivial/mod.rs"]
mod trivial;

use criterion::Criterion;
use http_support::proc_cpu_time;
use serde_json::{Value, json};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {
    "echo": {"limits": [{"counter": "c", "window": "minute", "max": 9007199254740992}]}}}"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
    line: String,
}

impl Client {
    fn start(mut cmd: Command) -> Client {
        let mut child = cmd
            .env("MCP_POLICY_BENCH_UPSTREAM", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = Client { child, stdin, stdout, next: 0, line: String::new() };
        c.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}),
        );
        writeln!(c.stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
        c.request("tools/list", json!({}));
        c
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        // One write per message, as clients do (`writeln!` on the unbuffered pipe would write
        // each piece of the JSON text apart: a few dozen writes, each waking the reader).
        let mut line = serde_json::to_vec(&msg).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        loop {
            self.line.clear();
            assert!(self.stdout.read_line(&mut self.line).unwrap() > 0, "closed");
            let v: Value = serde_json::from_str(&self.line).unwrap();
            if v.get("id") == Some(&json!(self.next)) {
                return v;
            }
        }
    }

    fn call(&mut self) {
        let r = self.request("tools/call", json!({"name": "echo", "arguments": {"run_id": 42}}));
        assert!(r["result"]["isError"].is_null(), "{r}");
        black_box(r);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's command over `policy` in front of this executable, with `extra` options.
fn gateway_command(policy: &std::path::Path, extra: &[&str]) -> Command {
    gateway_command_of(
        std::ffi::OsStr::new(env!("CARGO_BIN_EXE_mcp-policy-gateway")),
        policy,
        extra,
    )
}

/// The same with another build of the gateway.
fn gateway_command_of(bin: &std::ffi::OsStr, policy: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--policy").arg(policy).args(extra).arg("--").arg(std::env::current_exe().unwrap());
    cmd
}

/// The floor relay: copies what it reads on stdin to the upstream (this executable, started as
/// the trivial upstream) and what the upstream writes to stdout, unchanged, with the gateway's
/// spin (polls both for up to `MCP_POLICY_BENCH_RELAY` µs, then sleeps in `poll`).
fn floor_relay() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env_remove("MCP_POLICY_BENCH_RELAY")
        .env("MCP_POLICY_BENCH_UPSTREAM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_upstream = child.stdin.take().unwrap();
    let mut from_upstream = child.stdout.take().unwrap();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 1 << 16];
    // Work done on each message before it is written on (`MCP_POLICY_BENCH_FLOOR_WORK`).
    let work = Duration::from_micros(
        std::env::var("MCP_POLICY_BENCH_WORK").ok().and_then(|s| s.parse().ok()).unwrap_or(0),
    );
    let busy = || {
        let t = Instant::now();
        while t.elapsed() < work {
            std::hint::spin_loop();
        }
    };
    let spin = Duration::from_micros(
        std::env::var("MCP_POLICY_BENCH_RELAY").ok().and_then(|s| s.parse().ok()).unwrap_or(200),
    );
    loop {
        let start = Instant::now();
        let (client, upstream) = loop {
            let mut fds = [
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
                PollFd::new(from_upstream.as_fd(), PollFlags::POLLIN),
            ];
            let timeout =
                if start.elapsed() < spin { PollTimeout::ZERO } else { PollTimeout::NONE };
            if poll(&mut fds, timeout).unwrap() > 0 {
                let ready = |fd: &PollFd<'_>| !fd.revents().unwrap().is_empty();
                break (ready(&fds[0]), ready(&fds[1]));
            }
        };
        if client {
            let n = stdin.lock().read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            busy();
            to_upstream.write_all(&buf[..n]).unwrap();
        }
        if upstream {
            let n = from_upstream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            busy();
            out.write_all(&buf[..n]).unwrap();
            out.flush().unwrap();
        }
    }
    drop(to_upstream);
    let _ = child.wait();
}

/// A runtime as the gateway's over stdio: one thread, spinning for up to 200 µs before it
/// sleeps.
fn spinning_runtime() -> tokio::runtime::Runtime {
    let budget = Duration::from_micros(200);
    tokio::runtime::Builder::new_current_thread()
        .on_thread_park(move || mcp_policy_gateway::spin::before_sleep(budget))
        .enable_all()
        .build()
        .unwrap()
}

/// The gateway's transports alone: its stdio client link and its command upstream link, as the
/// gateway sets them up (one thread, the same spin), relaying each line as it comes, unparsed,
/// with nothing decided or recorded: what the gateway adds over this is the relay's own work.
fn transports_relay() {
    use mcp_policy_gateway::transport::{Inbound, Received};
    spinning_runtime().block_on(async {
        // The upstream: this executable as the trivial upstream (it inherits this environment).
        let command: Vec<std::ffi::OsString> = vec![
            "env".into(),
            "-u".into(),
            "MCP_POLICY_BENCH_TRANSPORTS".into(),
            std::env::current_exe().unwrap().into(),
        ];
        let (upstream, mut child) = mcp_policy_gateway::upstream::stdio::spawn(&command).unwrap();
        let (client, written) = mcp_policy_gateway::downstream::stdio::serve();
        let (mut from_client, to_client) = (client.rx, client.tx);
        let (mut from_upstream, to_upstream) = (upstream.rx, upstream.tx);
        let line = |mut bytes: Vec<u8>| {
            bytes.push(b'\n');
            bytes
        };
        loop {
            tokio::select! {
                m = from_client.recv() => match m {
                    Some(Inbound::Line(l)) => {
                        to_upstream.lines().unwrap().send_line(line(l)).await.unwrap();
                    }
                    _ => break,
                },
                m = from_upstream.recv_line() => match m {
                    Some(Received::Line(l)) => {
                        to_client.lines().unwrap().send_line(line(l)).await.unwrap();
                    }
                    _ => break,
                },
            }
        }
        drop((to_client, to_upstream));
        child.shutdown(Duration::from_secs(1)).await;
        written.wait(Duration::from_secs(1)).await;
    });
}

/// The floor on the gateway's async runtime: the same byte copy as [`floor_relay`], on one
/// tokio thread with the gateway's spin (`MCP_POLICY_BENCH_TOKIO_RELAY=1`), the pipes read and
/// written through the runtime. Between this row and the floor: the runtime's own wake-up path;
/// between this row and the transports: line framing and JSON.
fn tokio_floor_relay() {
    use std::os::fd::AsFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::unix::pipe;
    spinning_runtime().block_on(async {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env_remove("MCP_POLICY_BENCH_TOKIO_RELAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut to_upstream = child.stdin.take().unwrap();
        let mut from_upstream = child.stdout.take().unwrap();
        let stdin = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
        let stdout = std::io::stdout().as_fd().try_clone_to_owned().unwrap();
        let mut from_client = pipe::Receiver::from_owned_fd(stdin).unwrap();
        let mut to_client = pipe::Sender::from_owned_fd(stdout).unwrap();
        mcp_policy_gateway::spin::watch(from_client.as_fd());
        mcp_policy_gateway::spin::watch(from_upstream.as_fd());
        let (mut up, mut down) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
        loop {
            tokio::select! {
                n = from_client.read(&mut up) => match n.unwrap() {
                    0 => break,
                    n => to_upstream.write_all(&up[..n]).await.unwrap(),
                },
                n = from_upstream.read(&mut down) => match n.unwrap() {
                    0 => break,
                    n => to_client.write_all(&down[..n]).await.unwrap(),
                },
            }
        }
        drop(to_upstream);
        let _ = child.wait().await;
    });
}

fn percentiles(client: &mut Client, n: usize) -> (Duration, Duration, Duration) {
    for _ in 0..2000 {
        client.call();
    }
    let cpu = proc_cpu_time(client.child.id());
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            client.call();
            t.elapsed()
        })
        .collect();
    let cpu = proc_cpu_time(client.child.id()).saturating_sub(cpu) / u32::try_from(n).unwrap();
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100], cpu)
}

/// `n` calls each way, in alternating blocks of `block` (direct, then through `gateway`), so
/// that the machine's drift over the run (this VM's speed moves by 20% from one second to the
/// next) weighs on both alike: p50 and p99 of each.
fn interleaved(clients: &mut [&mut Client], n: usize, block: usize) -> Vec<(Duration, Duration)> {
    let mut samples = vec![Vec::with_capacity(n); clients.len()];
    for _ in 0..n / block {
        for (client, out) in clients.iter_mut().zip(samples.iter_mut()) {
            // The first calls of a block wake what slept during the other's.
            for _ in 0..20 {
                client.call();
            }
            for _ in 0..block {
                let t = Instant::now();
                client.call();
                out.push(t.elapsed());
            }
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            (s[s.len() / 2], s[s.len() * 99 / 100])
        })
        .collect()
}

fn main() {
    // Before the upstream's: `Client::start` sets both.
    if std::env::var_os("MCP_POLICY_BENCH_RELAY").is_some() {
        floor_relay();
        return;
    }
    if std::env::var_os("MCP_POLICY_BENCH_TOKIO_RELAY").is_some() {
        tokio_floor_relay();
        return;
    }
    if std::env::var_os("MCP_POLICY_BENCH_TRANSPORTS").is_some() {
        transports_relay();
        return;
    }
    if std::env::var_os("MCP_POLICY_BENCH_UPSTREAM").is_some() {
        trivial::stdio_upstream();
        return;
    }
    // Every process of the run on one CPU (`MCP_POLICY_BENCH_CPU=N`; the children inherit it):
    // each path's messages then pass by switching processes on that CPU, and no path pays
    // for waking another (halted) vCPU, which on a virtual machine weighs more than the
    // process in between does, and moves with where the kernel happens to place each process.
    if let Some(cpu) = std::env::var("MCP_POLICY_BENCH_CPU").ok().and_then(|c| c.parse().ok()) {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
        println!("every process of this run on CPU {cpu} (`MCP_POLICY_BENCH_CPU`)");
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    // One path alone, for a profiler to watch (`MCP_POLICY_BENCH_ONLY=gateway|floor|direct`,
    // `MCP_POLICY_BENCH_CALLS`, default 100,000): its p50 and p99, nothing else.
    if let Ok(only) = std::env::var("MCP_POLICY_BENCH_ONLY") {
        let mut client = match only.as_str() {
            "gateway" => {
                // Options for the gateway (`MCP_POLICY_BENCH_GATEWAY_ARGS`, split at spaces).
                let args = std::env::var("MCP_POLICY_BENCH_GATEWAY_ARGS").unwrap_or_default();
                let args: Vec<&str> = args.split_whitespace().collect();
                Client::start(gateway_command(&policy, &args))
            }
            "floor" => {
                let mut cmd = Command::new(std::env::current_exe().unwrap());
                cmd.env("MCP_POLICY_BENCH_RELAY", "200");
                Client::start(cmd)
            }
            "direct" => Client::start(Command::new(std::env::current_exe().unwrap())),
            other => panic!("MCP_POLICY_BENCH_ONLY: unknown path `{other}`"),
        };
        let n = std::env::var("MCP_POLICY_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        let (p50, p99, cpu) = percentiles(&mut client, n);
        println!("{only}: p50 {p50:?}, p99 {p99:?}, its CPU per call {cpu:?}");
        return;
    }
    let mut direct = Client::start(Command::new(std::env::current_exe().unwrap()));
    let mut gateway = Client::start(gateway_command(&policy, &[]));
    let mut sleeping = Client::start(gateway_command(&policy, &["--stdio-spin", "0"]));
    let floor_relay = |spin: &str| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("MCP_POLICY_BENCH_RELAY", spin);
        Client::start(cmd)
    };
    let mut floor = floor_relay("200");
    // The floor with some work on each message, in microseconds
    // (`MCP_POLICY_BENCH_FLOOR_WORK=2,5`): what a relay's own time costs a call.
    let work: Vec<String> = std::env::var("MCP_POLICY_BENCH_FLOOR_WORK")
        .map(|v| v.split(',').map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect())
        .unwrap_or_default();
    let mut working: Vec<(String, Client)> = work
        .iter()
        .map(|w| {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.env("MCP_POLICY_BENCH_RELAY", "200").env("MCP_POLICY_BENCH_WORK", w);
            (format!("the floor, spinning, with {w} µs of work per message"), Client::start(cmd))
        })
        .collect();
    let mut floor_sleeping = floor_relay("0");
    let mut tokio_floor = {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("MCP_POLICY_BENCH_TOKIO_RELAY", "1");
        Client::start(cmd)
    };
    let mut transports = {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("MCP_POLICY_BENCH_TRANSPORTS", "1");
        Client::start(cmd)
    };
    // Another build of the gateway (`MCP_POLICY_BENCH_BASELINE_BIN`), measured in the same run.
    let mut baseline = std::env::var_os("MCP_POLICY_BENCH_BASELINE_BIN")
        .map(|bin| Client::start(gateway_command_of(&bin, &policy, &[])));

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("stdio");
    g.bench_function("direct_call", |b| b.iter(|| direct.call()));
    g.bench_function("gateway_call", |b| b.iter(|| gateway.call()));
    g.bench_function("gateway_call_stdio_spin_0", |b| b.iter(|| sleeping.call()));
    g.finish();
    c.final_summary();

    let n = 20_000;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (d50, d99, _) = percentiles(&mut direct, n);
    println!("\n{n} sequential calls each way (CPU: the gateway process's, per call):");
    println!("| path | p50 | p99 | added p50 | added p99 | gateway CPU per call |");
    println!("|---|---|---|---|---|---|");
    println!("| upstream directly | {:.1} µs | {:.1} µs | | | |", us(d50), us(d99));
    let mut rows = vec![
        ("through the gateway (default: `--stdio-spin 200`)", &mut gateway),
        ("the gateway, `--stdio-spin 0`", &mut sleeping),
    ];
    if let Some(b) = baseline.as_mut() {
        rows.push(("baseline build (`MCP_POLICY_BENCH_BASELINE_BIN`)", b));
    }
    for (name, client) in rows {
        let (p50, p99, cpu) = percentiles(client, n);
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.0} µs |",
            us(p50),
            us(p99),
            us(p50) - us(d50),
            us(p99) - us(d99),
            us(cpu)
        );
    }
    let block = 500;
    println!(
        "\n{n} calls each way, in alternating blocks of {block} (the floor: a relay that only \
         copies bytes, with the same spin):"
    );
    println!("| path | p50 | p99 | added p50 | added p99 |");
    println!("|---|---|---|---|---|");
    let mut paths: Vec<(&str, &mut Client)> = vec![
        ("upstream directly", &mut direct),
        ("through the gateway (default)", &mut gateway),
        ("the gateway, `--spin 0`", &mut sleeping),
        ("the floor: a relay that copies bytes", &mut floor),
        ("the floor, sleeping at once", &mut floor_sleeping),
        ("the floor on the gateway's runtime (tokio, same spin)", &mut tokio_floor),
        ("the gateway's transports alone (no decision)", &mut transports),
    ];
    if let Some(b) = baseline.as_mut() {
        paths.push(("baseline build (`MCP_POLICY_BENCH_BASELINE_BIN`)", b));
    }
    for (name, client) in &mut working {
        paths.push((name.as_str(), client));
    }
    let (names, mut clients): (Vec<&str>, Vec<&mut Client>) = paths.into_iter().unzip();
    let figures = interleaved(&mut clients, n, block);
    let (d50, d99) = figures[0];
    println!("| {} | {:.1} µs | {:.1} µs | | |", names[0], us(d50), us(d99));
    for (name, (p50, p99)) in names.iter().zip(&figures).skip(1) {
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            us(*p50),
            us(*p99),
            us(*p50) - us(d50),
            us(*p99) - us(d99)
        );
    }
}
