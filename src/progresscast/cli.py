"""Command line: ``python -m progresscast COMMAND``.

``token USER [--admin] [--service] [--jobs ID,...] [--ttl SECONDS]`` mints an
access token with the secret in ``PROGRESSCAST_SECRET_KEY`` and prints it
alone on its last line. Without that variable it uses the secret a demo server
(``make run``) keeps in its instance folder, if there is one, and says so on
stderr; it never makes one up.

``watch URL JOB_ID [--token TOKEN]`` follows a job with a progress bar and
exits with its outcome (0 completed, 1 failed, 2 cancelled, 3 refused, 4 no
connection within ``--timeout``, 130 interrupted).

``jobs URL [--status S] [--token TOKEN]`` lists the caller's jobs.

``history [--store URL] [--kind KIND | --reset KIND | --reset-all] [--json]``
reads the job store directly: the kinds (pipelines) whose completed runs the
ETA learns from, with their median durations, one kind's runs, or forgets
them. ``--store`` defaults to ``$PROGRESSCAST_STORE_URL``, else the standalone
server's SQLite file in the checkout's ``instance/``.

``--token`` defaults to ``$PROGRESSCAST_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .stores import JobStore

SECRET_ENV = "PROGRESSCAST_SECRET_KEY"
INSTANCE_ENV = "PROGRESSCAST_INSTANCE_PATH"
TOKEN_ENV = "PROGRESSCAST_TOKEN"
STORE_ENV = "PROGRESSCAST_STORE_URL"

#: exit codes of `watch` (and `jobs`, for the last two)
EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled")


def _instance_path() -> str | None:
    """The instance folder a server started from here uses: ``$PROGRESSCAST_INSTANCE_PATH``,
    else, when this library runs from a progresscast checkout (``pip install -e .``, as
    ``make run`` does), the checkout's ``instance/`` (create_app's default), else None."""
    if os.environ.get(INSTANCE_ENV):
        return os.environ[INSTANCE_ENV]
    root = _checkout()
    return os.path.join(root, "instance") if root else None


def _checkout() -> str | None:
    """The progresscast checkout this library runs from (``pip install -e .``), or None."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(root, "web", "__init__.py")) and os.path.isfile(
        os.path.join(root, "wsgi.py")
    ):
        return root
    return None


def default_store_url() -> str | None:
    """``$PROGRESSCAST_STORE_URL``, else the standalone server's default store
    (config.py: the checkout's ``instance/progresscast.db``, whatever the instance
    path), else None (an installed library has no server of its own)."""
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    root = _checkout()
    return f"sqlite:///{os.path.join(root, 'instance', 'progresscast.db')}" if root else None


def _demo_secret(path: str) -> str | None:
    """The secret a demo server keeps in ``path``, None if there is none. Read, never
    created (the server writes it, web/demo.py); ``ValueError`` if it is too weak."""
    from .tokens import check_secret

    try:
        with open(path) as f:
            return check_secret(f.read().strip())
    except FileNotFoundError:
        return None


def _token(args: argparse.Namespace) -> int:
    from .tokens import demo_secret_path, issue_token

    secret = os.environ.get(SECRET_ENV)
    if not secret:
        # No secret given: a demo server's own, if one ran here (make run). Said on
        # stderr; only a server using that same file accepts the token.
        instance = _instance_path()
        path = demo_secret_path(instance) if instance else None
        try:
            secret = _demo_secret(path) if path else None
        except (OSError, ValueError) as exc:
            print(f"error: cannot use the demo secret in {path}: {exc}", file=sys.stderr)
            return 2
        if secret is None:
            where = f" (there is no demo server secret in {path} either)" if path else ""
            print(f"error: set {SECRET_ENV} to the server's secret{where}", file=sys.stderr)
            return 2
        print(
            f"# {SECRET_ENV} is not set: signed with the demo server's secret from {path}"
            " (only a server using that secret accepts this token)",
            file=sys.stderr,
        )
    jobs = [j for j in args.jobs.split(",") if j] if args.jobs else None
    try:
        token = issue_token(
            secret, args.user, ttl=args.ttl, admin=args.admin, service=args.service, jobs=jobs
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + args.ttl, UTC)
    rights = [r for r, on in (("admin", args.admin), ("service", args.service)) if on]
    if jobs:
        rights.append(f"jobs {','.join(jobs)}")
    print(
        f"# token for {args.user} ({', '.join(rights) or 'own jobs'}),"
        f" expires {expires.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    print(token)
    return 0


# --------------------------------------------------------------------- watch


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def is_indeterminate(snap: dict[str, Any]) -> bool:
    """A stage that counts without a total: a count and a rate, no percentage."""
    return snap.get("n") is not None and snap.get("total") is None


def format_count(value: float) -> str:
    """12400 → ``12,400``; 1234.56 → ``1,234.6``."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}".removesuffix(".0")


def format_rate(rate: float) -> str:
    """Units per second, tqdm-like: ``850``, ``1.2``, ``0.25`` (two significant
    digits below 10, whole numbers above)."""
    if rate >= 9.95:
        return f"{math.floor(rate + 0.5):,}"  # half up, as browsers round
    if rate <= 0:
        return "0"
    decimals = min(6, 1 - math.floor(math.log10(rate)))
    text = f"{rate:.{max(0, decimals)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def counts_text(snap: dict[str, Any]) -> str | None:
    """``12,400/50,000 rows · 850 rows/s``; ``12,400 rows · 850 rows/s`` without a
    total; for a group's parent ``3/10 jobs · 1 failed · 0.5 jobs/s``. None when
    the job counts nothing."""
    children = snap.get("children")
    unit = snap.get("unit")
    if isinstance(children, dict):
        ended = sum(children.get(k) or 0 for k in ("completed", "failed", "cancelled"))
        parts = [f"{format_count(ended)}/{format_count(children.get('total') or 0)} jobs"]
        parts += [
            f"{format_count(children[k])} {k}" for k in ("failed", "cancelled") if children.get(k)
        ]
        unit = unit or "jobs"
    elif snap.get("n") is not None:
        count = format_count(snap["n"])
        if snap.get("total") is not None:
            count += f"/{format_count(snap['total'])}"
        parts = [f"{count} {unit}" if unit else count]
    else:
        return None
    rate = snap.get("rate")
    if rate is not None and snap.get("status") == "running":
        parts.append(f"{format_rate(rate)} {unit}/s" if unit else f"{format_rate(rate)}/s")
    return " · ".join(parts)


def _stage_label(snap: dict[str, Any]) -> str:
    """``analyzing (2/4) 50%`` (no percent for a stage without a total), or
    the status when no stage runs, or for a group's parent."""
    stage, stages = snap.get("stage"), snap.get("stages") or []
    if (
        not stage
        or snap.get("status") not in ("running", "failed", "cancelled")
        or snap.get("children") is not None
    ):
        return str(snap.get("status"))
    names = [s.get("name") for s in stages]
    position = f" ({names.index(stage) + 1}/{len(names)})" if stage in names else ""
    label = f"{stage}{position}"
    if not is_indeterminate(snap):
        label += f" {snap.get('stage_progress') or 0:.0f}%"
    return label if snap["status"] == "running" else f"{snap['status']} in {label}"


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)  # as browsers round (Python's round() is to even)


def _eta_parts(seconds: float) -> tuple[str, str]:
    """An estimate's coarse units, as the dashboard's (ui.js ``formatEta``):
    whole seconds under a minute, whole minutes under an hour, then hours
    (tenths under 10 h). 40 → ``("40", "s")``, 150 → ``("3", "min")``,
    5400 → ``("1.5", "h")``."""
    secs = max(0, _half_up(seconds))
    if secs < 60:
        return str(secs), "s"
    minutes = _half_up(secs / 60)
    if minutes < 60:
        return str(minutes), "min"
    hours = secs / 3600
    if hours < 10:
        return f"{_half_up(hours * 10) / 10:.1f}".removesuffix(".0"), "h"
    return str(_half_up(hours)), "h"


def _known(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _eta(snap: dict[str, Any]) -> str | None:
    """A running job's ETA, as honest as the estimate: ``2–4 min`` or
    ``40 s–2 min`` with a range (``eta_low``, ``eta_high``; ``about 3 min`` when
    both ends read the same), ``about 3 min`` or ``about 40 s`` with only
    ``eta_seconds``; None without an estimate or when the job is not running."""
    if snap.get("status") != "running":
        return None
    low, high, eta = snap.get("eta_low"), snap.get("eta_high"), snap.get("eta_seconds")
    if _known(low) and _known(high):
        (a, unit_a), (b, unit_b) = _eta_parts(low), _eta_parts(high)
        if unit_a == unit_b:
            return f"about {a} {unit_a}" if a == b else f"{a}–{b} {unit_b}"
        return f"{a} {unit_a}–{b} {unit_b}"
    if not _known(eta):
        return None
    value, unit = _eta_parts(eta)
    return f"about {value} {unit}"


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())  # one line, whatever the pipeline sent
    return text if len(text) <= width else text[: width - 1] + "…"


def status_line(snap: dict[str, Any]) -> str:
    """One line: overall percent, stage, counts and rate, ETA, message."""
    parts = [f"{snap.get('progress') or 0:5.1f}%", _stage_label(snap)]
    counts = counts_text(snap)
    if counts:
        parts.append(counts)
    eta = _eta(snap)
    if eta is not None:
        parts.append(f"ETA {eta}")
    if snap.get("cancel_requested") and snap.get("status") == "running":
        parts.append("cancelling")
    if snap.get("message"):
        parts.append(_clip(snap["message"], 80))
    return " | ".join(parts)


class LineDisplay:
    """For pipes and logs: a line at every stage or status change, and at most
    one per ``interval`` seconds in between (only when something changed)."""

    def __init__(self, out: TextIO, interval: float) -> None:
        self.out = out
        self.interval = interval
        self._last_key: tuple | None = None
        self._last_line: str | None = None
        self._last_time = float("-inf")

    def update(self, snap: dict[str, Any]) -> None:
        line = status_line(snap)
        key = (snap.get("status"), snap.get("stage"))
        now = time.monotonic()
        if key != self._last_key or (
            line != self._last_line and now - self._last_time >= self.interval
        ):
            print(line, file=self.out, flush=True)
            self._last_key, self._last_line, self._last_time = key, line, now

    def close(self, snap: dict[str, Any] | None) -> None:
        if snap is not None and status_line(snap) != self._last_line:
            print(status_line(snap), file=self.out, flush=True)


class BarDisplay:
    """For terminals: one live line (rich) with a bar, percent, stage, counts and
    rate, ETA, message. The bar pulses while a stage without a total runs."""

    def __init__(self, out: TextIO, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[pct]}"),
            TextColumn("{task.fields[stage]}"),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[message]}"),
            console=Console(file=out),
            refresh_per_second=8,
        )
        self.task = self.progress.add_task(
            _clip(title, 24), total=100, pct="", stage="", counts="", eta="", message=""
        )
        self.progress.start()

    def update(self, snap: dict[str, Any]) -> None:
        eta = _eta(snap)
        message = _clip(snap.get("message"), 40)
        if snap.get("cancel_requested") and snap.get("status") == "running":
            message = "cancelling… " + message
        progress = snap.get("progress") or 0
        pulse = is_indeterminate(snap) and snap.get("status") == "running"
        # Without a total rich draws a pulsing bar (update() cannot unset one).
        for task in self.progress.tasks:
            if task.id == self.task:
                task.total = None if pulse else 100
        self.progress.update(
            self.task,
            completed=progress,
            pct=f"{progress:>5.1f}%",
            stage=_stage_label(snap),
            counts=counts_text(snap) or "",
            eta="" if eta is None else f"ETA {eta}",
            message=message,
        )

    def close(self, snap: dict[str, Any] | None) -> None:
        if snap is not None:
            self.update(snap)
        self.progress.stop()


def _display(args: argparse.Namespace, title: str) -> LineDisplay | BarDisplay:
    if not args.plain and sys.stdout.isatty():
        try:
            return BarDisplay(sys.stdout, title)
        except ImportError:  # rich is optional: pip install progresscast[client]
            pass
    return LineDisplay(sys.stdout, args.interval)


def _token_arg(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get(TOKEN_ENV) or None


def _watch(args: argparse.Namespace) -> int:
    from .client import WatchError, WatchTimeout, watch

    snap: dict[str, Any] | None = None
    last_event: dict[str, Any] | None = None
    display: LineDisplay | BarDisplay | None = None
    updates = watch(args.url, args.job_id, _token_arg(args), events=True, timeout=args.timeout)
    try:
        for event, snap in updates:
            last_event = event
            if display is None:
                display = _display(args, snap.get("name") or args.job_id)
            display.update(snap)
    except KeyboardInterrupt:
        code, message = EXIT_INTERRUPTED, "interrupted"
    except WatchTimeout as exc:
        code, message = EXIT_UNREACHABLE, f"error: {exc.message}"
    except WatchError as exc:
        code = EXIT_UNREACHABLE if exc.code == "unreachable" else EXIT_REFUSED
        message = f"error: {exc.code}: {exc.message}"
    else:
        if display is not None:
            display.close(snap)
        assert snap is not None  # watch() ends only on an ended job
        return _outcome(snap, last_event)
    finally:
        updates.close()  # disconnects, whatever happened
    if display is not None:
        display.close(None)
    print(message, file=sys.stderr)
    return code


def _outcome(snap: dict[str, Any], event: dict[str, Any] | None) -> int:
    name = f"{snap.get('name')} ({snap['job_id']})"
    took = _duration(snap.get("elapsed_seconds"))
    status = snap["status"]
    if status == "completed":
        print(f"completed: {name} in {took}")
        if snap.get("result") is not None:
            print(f"result: {json.dumps(snap['result'])}")
        return EXIT_COMPLETED
    stage = snap.get("stage") or "-"
    if status == "failed":
        error = snap.get("error") or {}
        print(
            f"failed: {name} in stage {error.get('stage') or stage} after {took}:"
            f" {error.get('type', 'Error')}: {error.get('message', '')}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    reason = (event or {}).get("reason") or snap.get("cancel_requested") or "no reason given"
    print(f"cancelled: {name} in stage {stage} after {took}: {reason}", file=sys.stderr)
    return EXIT_CANCELLED


# ---------------------------------------------------------------------- jobs


def _age(created_at: str | None, now: float) -> str:
    if not created_at:
        return "?"
    return _span(now - datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp())


def _span(seconds: float) -> str:
    """How long ago, coarsely: ``3d``, ``5h``, ``12m``, ``40s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def _table(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns two spaces apart, left-aligned but for the ``right`` ones."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def jobs_table(jobs: list[dict[str, Any]], now: float) -> list[str]:
    """The compact table `jobs` prints: id, name, status, progress, stage, age."""
    rows = [("ID", "NAME", "STATUS", "PROGRESS", "STAGE", "AGE")]
    for job in jobs:
        rows.append(
            (
                str(job.get("job_id")),
                _clip(job.get("name"), 30),
                str(job.get("status")),
                f"{job.get('progress') or 0:.1f}%",
                _clip(job.get("stage") or "-", 20),
                _age(job.get("created_at"), now),
            )
        )
    return _table(rows, right=frozenset({3}))


def _jobs(args: argparse.Namespace) -> int:
    import requests

    statuses = [s for arg in args.status or [] for s in arg.split(",") if s]
    bad = [s for s in statuses if s not in JOB_STATUSES]
    if bad:
        print(
            f"error: unknown status {bad[0]!r}; one of {', '.join(JOB_STATUSES)}", file=sys.stderr
        )
        return EXIT_REFUSED
    token = _token_arg(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(
            args.url.rstrip("/") + "/api/jobs",
            params={"status": statuses, "page_size": args.limit},
            headers=headers,
            timeout=args.timeout,
        )
    except requests.RequestException as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, list):
        error = body if isinstance(body, dict) else {}
        code = error.get("code", f"http_{response.status_code}")
        print(f"error: {code}: {error.get('message', response.reason)}", file=sys.stderr)
        return EXIT_REFUSED
    for line in jobs_table(body, time.time()):
        print(line)
    try:
        total = json.loads(response.headers.get("X-Pagination", "{}")).get("total", len(body))
    except ValueError:
        total = len(body)
    if not body:
        print("(no jobs)")
    elif total > len(body):
        print(f"... {total - len(body)} more (--limit)")
    return 0


# ------------------------------------------------------------------- history

#: runs read per kind: more than any history keeps (ETA_HISTORY_RUNS)
HISTORY_READ_LIMIT = 100_000


def _seconds(value: float | None) -> str:
    """A run's or a stage's duration: ``0.4s``, ``12.3s``, ``2m05s``, ``1h10m``."""
    if value is None:
        return "?"
    return f"{value:.1f}s" if value < 59.95 else _duration(value)


def _printable(kind: str) -> str:
    """A kind as typed (``--kind``, ``--reset``), quoted when it holds control characters."""
    return kind if kind.isprintable() else repr(kind)


def _stage_seconds(run: dict[str, Any]) -> list[tuple[str, float]]:
    """A run's ``[[stage, seconds], ...]``, what is well-formed of it."""
    pairs = []
    for item in run.get("stages") or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], int | float):
            pairs.append((str(item[0]), float(item[1])))
    return pairs


def history_summary(kind: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A kind of ``history_kinds()`` with the medians of its ``runs``: the total
    (``median_elapsed``) and each stage's (``median_stages``: ``[[stage, seconds],
    ...]`` in the newest run's stage order, then stages only older runs had)."""
    elapsed = [float(r["elapsed"]) for r in runs if isinstance(r.get("elapsed"), int | float)]
    by_stage: dict[str, list[float]] = {}
    for run in runs:  # newest first: its stages set the order
        for name, seconds in _stage_seconds(run):
            by_stage.setdefault(name, []).append(seconds)
    return {
        **kind,
        "median_elapsed": statistics.median(elapsed) if elapsed else None,
        "median_stages": [[name, statistics.median(v)] for name, v in by_stage.items()],
    }


def history_table(kinds: list[dict[str, Any]], now: float) -> list[str]:
    """What ``history`` prints: a kind a line, its runs, how long ago the newest
    finished, the median total and the median of each stage."""
    rows = [("KIND", "RUNS", "LAST", "MEDIAN", "STAGES (median)")]
    for kind in kinds:
        rows.append(
            (
                _printable(kind["kind"]),
                str(kind["runs"]),
                f"{_span(now - kind['last_finished_at'])} ago",
                _seconds(kind["median_elapsed"]),
                " · ".join(f"{name} {_seconds(s)}" for name, s in kind["median_stages"]),
            )
        )
    return _table(rows, right=frozenset({1, 3}))


def runs_table(runs: list[dict[str, Any]], now: float) -> list[str]:
    """What ``history --kind`` prints: a run a line, newest first."""
    rows = [("FINISHED (UTC)", "AGO", "ELAPSED", "JOB", "STAGES")]
    for run in runs:
        finished = run.get("finished_at")
        known = isinstance(finished, int | float)
        rows.append(
            (
                datetime.fromtimestamp(finished, UTC).strftime("%Y-%m-%d %H:%M:%S")
                if known
                else "?",
                _span(now - finished) if known else "?",
                _seconds(run.get("elapsed")),
                str(run.get("job_id")),
                " · ".join(f"{name} {_seconds(s)}" for name, s in _stage_seconds(run)),
            )
        )
    return _table(rows, right=frozenset({1, 2}))


def _history(args: argparse.Namespace) -> int:
    from .errors import StoreUnavailable
    from .stores import open_store, sqlite_path

    url = args.store or default_store_url()
    if not url:
        print(f"error: no store: pass --store URL or set {STORE_ENV}", file=sys.stderr)
        return 2
    path = sqlite_path(url)
    if path and path != ":memory:" and not os.path.isfile(path):
        # Reading a store never creates one (a mistyped path would make an empty file).
        print(f"error: no SQLite store at {path} (--store, ${STORE_ENV})", file=sys.stderr)
        return 2
    try:
        store = open_store(url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, OSError) as exc:
        print(f"error: cannot open the store {url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return _history_with(store, args)
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        store.close()


def _history_with(store: JobStore, args: argparse.Namespace) -> int:
    now = time.time()
    if args.reset is not None or args.reset_all:
        kind = None if args.reset_all else args.reset
        removed = store.reset_history(kind)
        if args.json:
            print(json.dumps({"kind": kind, "removed": removed}, ensure_ascii=False))
        else:
            which = "every kind" if kind is None else repr(kind)
            print(f"removed {removed} run{'' if removed == 1 else 's'} of {which}")
        return 0
    if args.kind is not None:
        runs = store.runs(args.kind, HISTORY_READ_LIMIT)
        if args.json:
            print(json.dumps({"kind": args.kind, "runs": runs}, indent=2, ensure_ascii=False))
        elif not runs:
            print(f"(no runs of {args.kind!r})")
        else:
            print(f"{_printable(args.kind)}: {len(runs)} run{'' if len(runs) == 1 else 's'}")
            for line in runs_table(runs, now):
                print(line)
        return 0
    kinds = [
        history_summary(kind, store.runs(kind["kind"], max(1, kind["runs"])))
        for kind in store.history_kinds()
    ]
    if args.json:
        print(json.dumps(kinds, indent=2, ensure_ascii=False))
    elif not kinds:
        print("(no history)")
    else:
        for line in history_table(kinds, now):
            print(line)
    return 0


# --------------------------------------------------------------------- parser


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m progresscast", description="progresscast command line"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "token",
        help="mint an access token",
        description=f"Mint a JWT signed with ${SECRET_ENV}; when it is not set, with the secret"
        " a demo server (make run) keeps in its instance folder"
        f" (${INSTANCE_ENV}, else the checkout's instance/), if there is one.",
    )
    token.add_argument("user", help="user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="may read and cancel every job")
    token.add_argument(
        "--service",
        action="store_true",
        help="a pipeline: may post events to any job, create jobs for any owner",
    )
    token.add_argument("--jobs", help="comma-separated job ids the holder may also read")
    token.add_argument("--ttl", type=float, default=3600, help="seconds valid (default 3600)")
    token.set_defaults(run=_token)

    watch = commands.add_parser(
        "watch",
        help="follow a job with a progress bar; the exit code is its outcome",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Follow a job live (Socket.IO), resuming by itself after a dropped"
        " connection or a server restart. On a terminal: one line with a bar, the overall"
        " percent, the stage, the ETA and the message; otherwise a line per stage change"
        " and at most one per --interval.",
        epilog="exit codes:\n  0  completed\n  1  failed (error type, message and stage on"
        " stderr)\n  2  cancelled\n  3  refused: not_found (also a job you may not read),"
        " unauthorized, ...\n  4  no connection within --timeout\n  130  interrupted (Ctrl-C)",
    )
    watch.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    watch.add_argument("job_id", help="the job to follow")
    watch.add_argument("--token", help=f"access token (default: ${TOKEN_ENV})")
    watch.add_argument(
        "--timeout",
        type=_positive,
        help="give up (exit 4) after this many seconds without a connection (default: never)",
    )
    watch.add_argument(
        "--interval",
        type=_not_negative,
        default=1.0,
        help="without a terminal: seconds between progress lines (default 1; 0: every change)",
    )
    watch.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    watch.set_defaults(run=_watch)

    jobs = commands.add_parser(
        "jobs",
        help="list your jobs",
        description="List the caller's jobs, newest first (GET /api/jobs): id, name,"
        " status, progress, stage, age.",
        epilog="exit codes: 0 listed, 3 refused (e.g. unauthorized), 4 server unreachable",
    )
    jobs.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    jobs.add_argument(
        "--status",
        action="append",
        metavar="S",
        help=f"only jobs in this status ({', '.join(JOB_STATUSES)}); repeat or comma-separate",
    )
    jobs.add_argument("--token", help=f"access token (default: ${TOKEN_ENV})")
    jobs.add_argument(
        "--limit",
        type=int,
        choices=range(1, 201),
        default=50,
        metavar="N",
        help="at most N jobs, 1-200 (default 50)",
    )
    jobs.add_argument("--timeout", type=_positive, default=10.0, help=argparse.SUPPRESS)
    jobs.set_defaults(run=_jobs)

    history = commands.add_parser(
        "history",
        help="list or forget the run history the ETA learns from",
        description="The job store's run history, per kind (pipeline): the completed runs"
        " the ETA learns from. Without options: every kind, its runs, when the newest"
        " finished, the median total and the median of each stage.",
        epilog="exit codes: 0 done, 2 no such store (or a bad URL), 4 store unreachable",
    )
    history.add_argument(
        "--store",
        metavar="URL",
        help=f"the job store (default: ${STORE_ENV}, else the standalone server's"
        " instance/progresscast.db)",
    )
    which = history.add_mutually_exclusive_group()
    which.add_argument("--kind", help="this kind's runs, newest first")
    which.add_argument("--reset", metavar="KIND", help="forget this kind's runs")
    which.add_argument("--reset-all", action="store_true", help="forget every kind's runs")
    history.add_argument("--json", action="store_true", help="JSON instead of a table")
    history.set_defaults(run=_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
