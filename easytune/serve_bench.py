"""How does `easytune serve` hold up when many clients arrive at once, some of them stalling?

    python -m easytune.serve_bench [--clients 50] [--half-body 20] [--max-tokens 64] [--seconds 90]
                                   [--target easytune-tiny] [--home DIR] [--queue N]

Starts `easytune serve TARGET` on a free loopback port (the built-in tiny model in a temporary home
unless told otherwise), opens the half-body clients first (each sends its headers and half of its body,
then nothing), then releases the full clients together, each asking a greedy chat completion. Everything
stops after --seconds: a client without an answer by then counts as unanswered. Prints what the clients
saw (answered, 503 with or without Retry-After, connections reset or refused, unanswered), the median
and 95th percentile wait of the answered ones, throughput, and how soon the half-body clients were let
go. Loopback only; figures, never a pass/fail verdict.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

HOST = "127.0.0.1"
QUESTIONS = ["怎么退货？", "What can you do?", "Hello!", "运费怎么算？多久能到？", "Tell me about the moon.",
             "How do I change my delivery address after I have paid for the order?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(target: str, home: Path, port: int, queue: int | None, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "easytune.cli", "serve", target, "--host", HOST, "--port", str(port)]
    if queue is not None:
        command += ["--queue", str(queue)]
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s")


def ask(port: int, question: str, max_tokens: int, deadline: float, start: threading.Barrier, results: list) -> None:
    """One full client: a greedy chat completion; appends (outcome, seconds waited, completion tokens)."""
    body = json.dumps({"messages": [{"role": "user", "content": question}], "temperature": 0,
                       "max_tokens": max_tokens}).encode()
    start.wait()
    began = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=max(0.1, deadline - began))
    try:
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        waited = time.monotonic() - began
        if response.status == 200:
            results.append(("answered", waited, json.loads(data)["usage"]["completion_tokens"]))
        elif response.status == 503:
            results.append(("503 with Retry-After" if response.getheader("Retry-After") else "503 without Retry-After",
                            waited, 0))
        else:
            results.append((f"HTTP {response.status}", waited, 0))
    except (ConnectionResetError, BrokenPipeError):  # http.client's RemoteDisconnected is a reset too
        results.append(("reset", time.monotonic() - began, 0))
    except ConnectionRefusedError:
        results.append(("refused", time.monotonic() - began, 0))
    except TimeoutError:
        results.append(("unanswered", time.monotonic() - began, 0))
    finally:
        connection.close()


def stall(port: int, deadline: float, opened: threading.Barrier, results: list) -> None:
    """One half-body client: headers and half the announced body, then silence until the server lets go."""
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 200}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    began = time.monotonic()
    try:
        sock = socket.create_connection((HOST, port), timeout=5)
    except OSError:
        opened.wait()
        results.append(("could not connect", 0.0))
        return
    with sock:
        try:
            sock.sendall(head + body[:len(body) // 2])
        finally:
            opened.wait()
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            reply = sock.recv(64)
            outcome = "closed with " + reply.split(b"\r\n")[0].decode("latin-1") if reply else "closed, no answer"
        except ConnectionResetError:
            outcome = "reset"
        except TimeoutError:
            outcome = "still held"
        results.append((outcome, time.monotonic() - began))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(args, full: list, stalled: list, took: float, health: dict | None) -> None:
    counts = Counter(outcome for outcome, _, _ in full)
    waits = [waited for outcome, waited, _ in full if outcome == "answered"]
    tokens = sum(count for _, _, count in full)
    print(f"\n{args.clients} clients at once, {args.half_body} half-body clients; "
          f"{args.max_tokens} new tokens at most; stopped after {took:.1f} s")
    for outcome in ("answered", "503 with Retry-After", "503 without Retry-After", "reset", "refused", "unanswered"):
        print(f"  {outcome:<24} {counts.pop(outcome, 0):>4}")
    for outcome, count in sorted(counts.items()):
        print(f"  {outcome:<24} {count:>4}")
    if waits:
        print(f"  wait of the answered     median {statistics.median(waits):.1f} s, "
              f"p95 {percentile(waits, 0.95):.1f} s, longest {max(waits):.1f} s")
        print(f"  throughput               {len(waits) / max(waits):.2f} answers/s, {tokens / max(waits):.0f} tokens/s")
    if stalled:
        print("  half-body clients        " + ", ".join(f"{n} {o}" for o, n in Counter(o for o, _ in stalled).items()))
        let_go = [seconds for outcome, seconds in stalled if outcome.startswith("closed") or outcome == "reset"]
        if let_go:
            print(f"  let go after             median {statistics.median(let_go):.1f} s, longest {max(let_go):.1f} s")
    if health and "batches" in health:
        print(f"  server                   {health['answered']} answers in {health['batches']} generations, "
              f"largest batch {health['largest_batch']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m easytune.serve_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="full clients, released together")
    parser.add_argument("--half-body", type=int, default=20, help="clients that send half a body and stall")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request")
    parser.add_argument("--seconds", type=float, default=90, help="the whole run stops after this long")
    parser.add_argument("--target", default="easytune-tiny", help="what to serve: a model name, folder or job id")
    parser.add_argument("--home", help="EASYTUNE_HOME holding the target (default: a temporary one)")
    parser.add_argument("--queue", type=int, default=None, help="the server's --queue (default: its own)")
    args = parser.parse_args(argv)

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="easytune-serve-bench-"))
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(args.target, home, port, args.queue, log)
        try:
            wait_ready(port, proc)
            print(f"serving {args.target} on {HOST}:{port}; {os.cpu_count()} CPUs, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            full, stalled = [], []
            deadline = time.monotonic() + args.seconds
            opened = threading.Barrier(args.half_body + 1)
            threads = [threading.Thread(target=stall, args=(port, deadline, opened, stalled), daemon=True)
                       for _ in range(args.half_body)]
            for thread in threads:
                thread.start()
            opened.wait()  # every half-body client holds its connection before the crowd arrives
            start = threading.Barrier(args.clients + 1)
            crowd = [threading.Thread(target=ask, daemon=True, args=(port, QUESTIONS[i % len(QUESTIONS)],
                                                                     args.max_tokens, deadline, start, full))
                     for i in range(args.clients)]
            for thread in crowd:
                thread.start()
            start.wait()
            began = time.monotonic()
            for thread in crowd + threads:
                thread.join(max(0.0, deadline - time.monotonic()) + 5)
            took = time.monotonic() - began
            try:
                health = wait_ready(port, proc, timeout=5)
            except SystemExit:
                health = None
            report(args, full, stalled, took, health)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.returncode not in (0, -15):
                log.seek(0)
                print(log.read().decode("utf-8", "replace")[-3000:], file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
