"""Where a connection's memory goes: tracemalloc on the progresscast server.

    python bench/memory_probe.py [--clients 2000] [--frames 1] [--by lineno]

Starts the benchmark server with ``PROGRESSCAST_BENCH_TRACEMALLOC``, snapshots
the heap, connects (and joins) ``--clients`` clients from a Node load
generator, snapshots again and prints the largest differences per client.
tracemalloc sees Python allocations, greenlet stacks included; RSS also holds
what it does not see (allocator slack, kernel socket buffers are not RSS).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run
from lib import call_all, cleanup, install_cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=1, help="traceback depth")
    parser.add_argument("--by", default="lineno", help="lineno, filename or traceback")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-trace", action="store_true", help="RSS only, no tracemalloc")
    args = parser.parse_args()
    if not args.no_trace:
        os.environ["PROGRESSCAST_BENCH_TRACEMALLOC"] = str(args.frames)
    install_cleanup()
    try:
        with tempfile.TemporaryDirectory(prefix="progresscast-memprobe-") as tmpdir:
            tmp = Path(tmpdir)
            secret = __import__("secrets").token_urlsafe(48)
            tokens = tmp / "tokens.json"
            run.write_tokens(tokens, secret, args.clients, 100)
            server = run.Server("progresscast", tmp, secret, 100).start()
            gens = run.make_gens(server, 1, tokens, "mem")
            time.sleep(1.0)
            rss0 = server.rss()
            if not args.no_trace:
                requests.post(f"{server.url}/bench/heap/before", timeout=60).raise_for_status()
            conn = run.connect(gens, 0, args.clients, 1000, 10000, True)
            call_all(gens, "ping", [{"timeoutMs": 20000, "spreadMs": 1000}], 60)
            time.sleep(1.0)
            rss = server.rss()
            n = max(1, conn["joined"])
            print(f"joined {conn['joined']}; RSS {(rss - rss0) / n / 1024:.1f} KiB/conn")
            if args.no_trace:
                return
            requests.post(f"{server.url}/bench/heap/after", timeout=60).raise_for_status()
            diff = requests.get(
                f"{server.url}/bench/heap/before/after",
                params={"by": args.by, "top": args.top},
                timeout=60,
            ).json()
            total = sum(d["bytes"] for d in diff)
            print(f"top {args.top} traced {total / n / 1024:.1f} KiB/conn")
            for d in diff:
                print(f"{d['bytes'] / n:9.0f} B/conn {d['count'] / n:6.2f} obj/conn  {d['where']}")
            for g in gens:
                g.close()
            server.stop()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
