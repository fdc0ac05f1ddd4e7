"""Emitter overhead: ns per ``advance()`` in a tight loop, beside tqdm.

Three loops of the same length, each timed several times (best of): a bare
loop (the floor), ``tqdm.update(1)`` writing to a null file, and a
progresscast emitter's ``advance()`` on a real tracker (SQLite store in a
temporary folder, no socket emitter). ``--json`` prints the result for
bench/run.py; the ratio progresscast / tqdm is the target (≤ 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

N = 2_000_000
REPEATS = 5


def bare(n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t


def with_tqdm(n: int) -> float:
    from tqdm import tqdm

    with open(os.devnull, "w") as null, tqdm(total=n, file=null, mininterval=0.1) as bar:
        update = bar.update
        t = time.perf_counter()
        for _ in range(n):
            update(1)
        return time.perf_counter() - t


def with_progresscast(n: int) -> float:
    from progresscast import ProgressTracker, open_store

    with tempfile.TemporaryDirectory() as tmp:
        tracker = ProgressTracker(open_store(f"sqlite:///{tmp}/bench.db"))
        job = tracker.job("bench", ["work"], owner="bench", min_interval=0.1)
        job.stage("work", total=n)
        advance = job.advance
        t = time.perf_counter()
        for _ in range(n):
            advance()
        elapsed = time.perf_counter() - t
        job.complete()
        tracker.store.close()
        return elapsed


def measure(n: int = N, repeats: int = REPEATS) -> dict:
    results = {}
    for name, fn in (("bare", bare), ("tqdm", with_tqdm), ("progresscast", with_progresscast)):
        best = min(fn(n) for _ in range(repeats))
        results[name] = best / n * 1e9
    return {
        "calls": n,
        "repeats": repeats,
        "ns_per_call": {k: round(v, 1) for k, v in results.items()},
        # the loop itself costs the same in both; compare what each call adds too
        "ratio": round(results["progresscast"] / results["tqdm"], 3),
        "ratio_over_bare": round(
            (results["progresscast"] - results["bare"]) / (results["tqdm"] - results["bare"]), 3
        ),
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calls", type=int, default=N)
    args = parser.parse_args()
    result = measure(args.calls)
    if args.json:
        print(json.dumps(result))
    else:
        for name, ns in result["ns_per_call"].items():
            print(f"{name:>13}: {ns:7.1f} ns/call")
        ratio, added = result["ratio"], result["ratio_over_bare"]
        print(f"progresscast / tqdm: {ratio}  (added cost only: {added})")


if __name__ == "__main__":
    main()
