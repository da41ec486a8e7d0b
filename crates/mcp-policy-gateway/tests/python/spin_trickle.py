"""The CPU the gateway's spin (`--spin`) spends for clients that trickle their bytes.

Not a test (it measures; it asserts nothing): docs/gateway.md quotes its figures.

    python3 crates/mcp-policy-gateway/tests/python/spin_trickle.py target/release/mcp-policy-gateway

Starts the gateway (HTTP listener, one thread, an upstream that never answers) with `--spin 0`
and with `--spin 200`; for each, two clients send one header byte every 0.5 ms for 5 s, and the
gateway's CPU time over those 5 s is printed (clock ticks, 100 per second).
"""
import os, re, socket, subprocess, sys, tempfile, threading, time

BIN = sys.argv[1]
policy = os.path.join(tempfile.mkdtemp(), "policy.json")
open(policy, "w").write('{"version": "1", "default": "deny", "tools": {"echo": {}}}')

upstream = socket.socket()
upstream.bind(("127.0.0.1", 0))
upstream.listen(100)
held = []
threading.Thread(target=lambda: [held.append(upstream.accept()[0]) for _ in iter(int, 1)],
                 daemon=True).start()


def ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def gateway(spin):
    p = subprocess.Popen([BIN, "--policy", policy, "--listen", "127.0.0.1:0", "--threads", "1",
                          "--spin", str(spin), "--policy-poll", "0", "--upstream",
                          f"http://127.0.0.1:{upstream.getsockname()[1]}/mcp"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, text=True)
    for line in p.stderr:
        m = re.search(r"serving MCP at http://[\d.]+:(\d+)/mcp", line)
        if m:
            return p, int(m.group(1))
    raise SystemExit("the gateway exited")


def trickle(port, stop):
    while not stop.is_set():
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /mcp HTTP/1.1\r\nX-a: ")
        started = time.time()
        while time.time() - started < 2 and not stop.is_set():
            try:
                s.send(b"a")
            except OSError:
                break
            time.sleep(0.0005)
        s.close()


for spin in [0, 200]:
    p, port = gateway(spin)
    stop = threading.Event()
    for _ in range(2):
        threading.Thread(target=trickle, args=(port, stop), daemon=True).start()
    time.sleep(0.5)
    before = ticks(p.pid)
    time.sleep(5)
    used = ticks(p.pid) - before
    stop.set()
    p.terminate()
    p.wait()
    print(f"--spin {spin:3}: {used} ticks of CPU in 5 s", flush=True)
