"""Seconds left (:class:`Forecast`: from a pipeline's history and its own
pace, issue 14; docs/eta.md) and the rate of a counted stage (:class:`RateMeter`).

The rate is tqdm's: the increments of work (dn) and of time (dt) smoothed
separately with a bias-corrected exponential moving average and divided; a
single slow or fast step moves it only a little, and the first samples are
not dragged towards zero by the EMA's initial value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .history import History


@dataclass(slots=True)
class EMA:
    """Bias-corrected exponential moving average (tqdm's ``EMA``).

    ``smoothing`` is the weight of the newest sample, in (0, 1]: small values
    average over a long history, 1 keeps only the latest sample.
    """

    smoothing: float = 0.3
    last: float = 0.0
    calls: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing!r}")

    def update(self, x: float) -> float:
        beta = 1 - self.smoothing
        self.last = self.smoothing * x + beta * self.last
        self.calls += 1
        return self.value

    @property
    def value(self) -> float:
        if not self.calls:
            return 0.0
        beta = 1 - self.smoothing
        return self.last / (1 - beta**self.calls)


#: Weight of a warm run's history against its own pace so far, as a share of
#: the learned length of a whole run: early on, a run is taken to go at its
#: history's pace, and its own pace takes over as evidence comes in.
PRIOR_SHARE = 0.05
#: How far a run's pace may be from its history's: beyond, the run is so
#: unlike its history that the history is not much of a guide anyway.
SPEED_LIMITS = (0.1, 10.0)


@dataclass(slots=True)
class Estimate:
    """Seconds left (``eta``) and, from history, a range around it."""

    eta: float | None = None
    low: float | None = None
    high: float | None = None


#: How far back a pace looks, as a share of the time it has been measured:
#: from SHORT_HORIZON for work that comes at an even pace (a drift in its
#: speed is then followed at once) to LONG_HORIZON for work that comes
#: unevenly (noise and bursts are then averaged out). NOISE_REF is the
#: unevenness (|log| of a report's pace over the average, the worst seen
#: lately) at which the horizon is longest.
SHORT_HORIZON = 0.05
LONG_HORIZON = 2.0
NOISE_REF = 0.15
#: The job's pace's LONG_HORIZON when the current stage's work comes
#: unevenly: nearly all of the time measured, as the plain average does.
#: (Longer still follows a job that speeds up worse than tqdm's EMA does.)
UNEVEN_JOB_HORIZON = 10.0
#: The horizon spans at least this many of the longest gaps between reports,
#: so that work in bursts and pauses is averaged over whole cycles.
GAP_HORIZON = 3.0
#: A report with no work in it counts as this uneven (|log| of the ratio).
PAUSE_NOISE = 3.0
#: How slowly the unevenness seen fades, per report.
NOISE_FADE = 0.98
#: A trend (recent pace over the longer-run one) is extrapolated to this
#: power: the stage's rest at the trend, the later stages at twice it.
TREND_GAIN = 3.0
#: The share of the gap to a lower estimate closed per report (see _steady).
GLIDE = 0.1


@dataclass(slots=True)
class Pace:
    """Seconds per unit of work, over recent time.

    Each sample (``dt`` seconds for ``dx`` work) counts with a weight that
    fades with the time since it. How fast it fades depends on how uneven the
    samples are: an even pace that drifts (a job slowing down) is followed
    closely, an uneven one (noise, bursts and pauses) is averaged over a
    long time. Unlike tqdm's EMA, which weighs every report alike, a sample
    counts for the time it spans: ten quick reports in a burst do not outweigh
    the wait after it.
    """

    seconds: float = 0.0
    work: float = 0.0
    #: the longest gap between two samples so far
    gap: float = 0.0
    #: how uneven the samples are: the worst recent |log(sample pace / pace)|,
    #: fading by NOISE_FADE per sample
    noise: float = 0.0
    samples: int = 0
    #: the same sums over a four times longer horizon, to see a trend
    slow_seconds: float = 0.0
    slow_work: float = 0.0
    #: LONG_HORIZON for this pace, if not the default
    long_horizon: float = 0.0

    def add(self, dt: float, dx: float, span: float) -> None:
        """A sample: ``dx`` work in ``dt`` seconds, ``span`` seconds since measuring began."""
        if not (math.isfinite(dt) and math.isfinite(dx) and dt >= 0 and dx >= 0):
            return
        if dx > 0 and not math.isfinite(dt / dx):
            return  # so little work that its pace is not a number: no sample
        pace = self.value
        if pace is not None and dt > 0 and (dx <= 0 or dt / dx / pace > 0):
            deviation = abs(math.log(dt / dx / pace)) if dx > 0 else PAUSE_NOISE
            # The worst recent unevenness, fading slowly: a burst of even
            # reports does not make a pipeline that pauses look even.
            self.noise = max(min(deviation, PAUSE_NOISE), self.noise * NOISE_FADE)
        self.samples += 1
        self.gap = max(self.gap, dt)
        unevenness = min(1.0, self.noise / NOISE_REF) if self.samples > 3 else 1.0
        long_horizon = self.long_horizon or LONG_HORIZON
        share = SHORT_HORIZON + (long_horizon - SHORT_HORIZON) * unevenness
        horizon = max(share * span, GAP_HORIZON * self.gap)
        keep = math.exp(-dt / horizon) if horizon > 0 else 0.0
        self.seconds = self.seconds * keep + dt
        self.work = self.work * keep + dx
        keep = math.exp(-dt / (4 * horizon)) if horizon > 0 else 0.0
        self.slow_seconds = self.slow_seconds * keep + dt
        self.slow_work = self.slow_work * keep + dx

    @property
    def trend(self) -> float:
        """Recent pace over the slower average (2: slowing to half the speed);
        1 for uneven work, where a trend can't be told from noise."""
        if self.work <= 0 or self.slow_work <= 0 or self.samples <= 3:
            return 1.0
        if self.noise >= NOISE_REF:
            return 1.0
        g = (self.seconds / self.work) / (self.slow_seconds / self.slow_work)
        return min(2.0, max(0.5, g)) ** TREND_GAIN

    @property
    def value(self) -> float | None:
        if self.work <= 0 or self.seconds <= 0:
            return None
        pace = self.seconds / self.work
        return pace if math.isfinite(pace) else None

    def to_list(self) -> list[float]:
        return [
            self.seconds,
            self.work,
            self.gap,
            self.noise,
            self.samples,
            self.slow_seconds,
            self.slow_work,
            self.long_horizon,
        ]


@dataclass(slots=True)
class Forecast:
    """Turns a job's stage-by-stage progress into seconds left (issue 14).

    Its fields are plain data so a job's forecast is stored with its state and
    picked up by whichever process reports next. The state machine tells it
    when the job starts (with what :class:`~progresscast.history.History`
    says about the job's stages), when a stage ends, and each observed
    progress; docs/protocol.md ("ETA, history and learned weights") is the
    contract.

    - **Warm** (the current stage has history): the current stage's learned
      time left plus the later stages' learned durations, scaled by how fast
      this run is going against its history, blended with the current
      stage's own pace as the stage advances.
    - **Cold**: the current stage's own recent pace for its rest; the later
      stages at the job's recent pace per percent of progress.
    """

    started: float | None = None
    #: when the current stage's latest attempt began (a retry: progress that
    #: went back starts one), and its fraction then
    attempt: tuple[float, float] | None = None
    stage_started: float | None = None
    #: seconds each ended stage ran (0 for a skipped one), None while not ended
    stage_seconds: list[float | None] = field(default_factory=list)
    stage_pace: Pace = field(default_factory=Pace)  # seconds per whole current stage
    job_pace: Pace = field(default_factory=Pace)  # seconds per percent of the job
    #: the previous observation: (time, fraction, progress, stage, eta)
    last: tuple[float, float, float, int, float | None] | None = None
    history: History | None = None
    #: seconds each stage lost to attempts that went back (retries): they say
    #: nothing of how fast this run goes
    retried: list[float] = field(default_factory=list)
    #: the stage that was under way when the forecast was rebuilt (resume):
    #: its measured time is only part of it
    partial: int | None = None
    #: the current stage's fraction when its learned time starts: 0, or that
    #: of its first report when that report is what began it (a report that
    #: names the next stage ends the last one: work done before it is in
    #: the last stage's time)
    entry: float = 0.0

    def start(self, now: float, n_stages: int, history: History | None) -> None:
        """The job started at ``now``, in its first stage."""
        self.started = self.stage_started = now
        self.attempt = (now, 0.0)
        self.stage_seconds = [None] * n_stages
        self.retried = [0.0] * n_stages
        self.history = history
        self.partial = None
        self.entry = 0.0
        self.last = (now, 0.0, 0.0, 0, None)

    def resume(
        self, now: float, started: float, n_stages: int, stage: int, fraction: float
    ) -> None:
        """Rebuild the forecast of a job already under way without one (it
        was stored by a version before issue 14, as across an upgrade):
        cold, with the job's average pace so far as its first sample. What
        ran before is unknown, so this run teaches no history."""
        self.start(started, n_stages, None)
        self.stage_started = now
        self.attempt = (now, fraction)
        self.partial = stage
        # As if last seen at the start with this stage's fraction: the next
        # observation samples the job's pace since the start, not the stage's.
        self.last = (started, fraction, 0.0, stage, None)

    def enter(self, now: float, current: int, target: int | None) -> None:
        """Stage ``current`` ended at ``now``; ``target`` (or none) begins,
        and the stages between were skipped."""
        if self.stage_started is None or not self.stage_seconds:
            return  # a job started before forecasts existed
        took = round(max(0.0, now - self.stage_started), 3)
        self.stage_seconds[current] = None if current == self.partial else took
        end = len(self.stage_seconds) if target is None else target
        for i in range(current + 1, end):
            self.stage_seconds[i] = 0.0
        self.stage_started = now
        self.attempt, self.entry = (now, 0.0), 0.0
        # A new stage's pace starts afresh, but as uneven as the last one's:
        # a pipeline that works in bursts does so in every stage.
        self.stage_pace = Pace(noise=self.stage_pace.noise)

    def observe(
        self, now: float, stage: int, fraction: float, weights: list[float], progress: float
    ) -> Estimate:
        """The job is at ``fraction`` (0–1) of stage ``stage`` and ``progress``
        percent overall at ``now``; ``weights`` are the stages' weights."""
        if self.started is None or self.attempt is None or not self.stage_seconds:
            return Estimate()
        last = self.last or (self.started, 0.0, 0.0, 0, None)
        same_stage = last[3] == stage
        dt = now - last[0]
        if dt > 0 and progress >= last[2]:
            # Work that comes unevenly (noise, bursts) is best averaged over
            # all of it: the job's pace then looks back further.
            uneven = min(1.0, self.stage_pace.noise / NOISE_REF)
            self.job_pace.long_horizon = LONG_HORIZON + (UNEVEN_JOB_HORIZON - LONG_HORIZON) * uneven
            self.job_pace.add(dt, progress - last[2], now - self.started)
        t0, f0 = self.attempt
        if not same_stage and t0 == now and f0 == 0.0:
            # This report began the stage: its time starts here, at this fraction.
            self.attempt, self.entry = (now, fraction), fraction
            t0, f0 = self.attempt
        if same_stage and fraction < last[1]:  # the stage went back (a retry): start over
            if len(self.retried) == len(self.stage_seconds):
                self.retried[stage] += now - t0
            self.attempt = (now, fraction)
            self.stage_pace = Pace()
        else:
            since = last[0] if same_stage and last[0] >= t0 else t0
            base = last[1] if same_stage and last[0] >= t0 else f0
            if now > since and fraction >= base:
                self.stage_pace.add(now - since, fraction - base, now - t0)
        estimate = self._estimate(now, stage, fraction, weights)
        if estimate.eta is not None and same_stage and last[4] is not None:
            estimate = _steady(estimate, last[4], max(0.0, dt), progress, last[2])
        estimate = _rounded(estimate)
        self.last = (now, fraction, progress, stage, estimate.eta)
        return estimate

    # ------------------------------------------------------------ estimates

    def _estimate(self, now: float, k: int, f: float, weights: list[float]) -> Estimate:
        h = self.history
        durations = h.durations if h is not None else [None] * len(weights)
        own = self.stage_pace.value  # seconds per whole stage
        per_percent = self.job_pace.value
        trend = self.stage_pace.trend
        if own is not None:
            own *= trend
        job_pp = per_percent = None if per_percent is None else per_percent * trend * trend
        # How uneven this stage's work comes (0: even, 1: noise, bursts). An
        # uneven stage's own pace is a poor sample: the job's pace, measured
        # over more work, counts for more.
        uneven = min(1.0, self.stage_pace.noise / NOISE_REF)
        if k == 0 and self.stage_pace.samples <= 3:
            uneven = 1.0  # nothing seen yet
        if own is not None and weights[k] > 0:
            # The later stages at this stage's pace, as the stage advances
            # (unless it comes unevenly).
            stage_pp = own / (100.0 * weights[k])
            g = f * (1.0 - uneven)
            per_percent = stage_pp if per_percent is None else g * stage_pp + (1 - g) * per_percent
        # Only the stage's latest attempt counts: one that went back (a retry)
        # starts over from its fraction then.
        t0, f0 = self.attempt
        in_attempt = max(0.0, now - t0)
        # The latest attempt's share of the stage's learned time (all of it
        # for a first attempt), and the part of that share done so far.
        span = (1.0 - f0) / (1.0 - self.entry) if self.entry < 1.0 else 1.0
        done = (f - f0) / (1.0 - f0) if f0 < 1.0 else 1.0
        speed = self._speed(k, done * span, in_attempt, durations)
        if durations[k] is not None:
            # The stage's rest by its time left, not by its share left: a stage's
            # learned length runs from its first report to the next stage's,
            # and work is reported after it is done, so the share runs ahead.
            learned = max(0.0, durations[k] * speed * span - in_attempt)
            # The stage's own pace takes over as the stage advances.
            current = learned if own is None else f * (1.0 - f) * own + (1.0 - f) * learned
        elif own is not None:
            if job_pp is not None:
                # Its own pace as the stage advances; when it comes unevenly,
                # the job's pace weighs in until the stage is well under way.
                g = 1.0 - (1.0 - f) * uneven
                own = g * own + (1.0 - g) * 100.0 * weights[k] * job_pp
            current = (1.0 - f) * own
        elif per_percent is not None:
            current = (1.0 - f) * 100.0 * weights[k] * per_percent
        else:
            return Estimate()
        later = 0.0
        for i in range(k + 1, len(weights)):
            if durations[i] is not None:
                later += durations[i] * speed
            elif per_percent is not None:
                later += 100.0 * weights[i] * per_percent
            else:
                return Estimate()
        eta = max(0.0, current + later)
        if h is None or h.spread is None or durations[k] is None:
            return Estimate(eta)
        return Estimate(eta, eta * h.spread[0], eta * h.spread[1])

    def _speed(
        self, k: int, done: float, in_attempt: float, durations: list[float | None]
    ) -> float:
        """How slow this run is against its history (2: twice as long), 1
        without history. ``done``: the share of stage ``k`` its latest
        attempt did in ``in_attempt`` seconds."""
        known = [d for d in durations if d is not None]
        if not known:
            return 1.0
        retried = self.retried if len(self.retried) == len(durations) else [0.0] * len(durations)
        actual = learned = 0.0
        for s, d, lost in zip(self.stage_seconds[:k], durations[:k], retried, strict=False):
            if s and d is not None:  # a skipped stage says nothing of the pace
                actual += max(0.0, s - lost)
                learned += d
        if durations[k] is not None:
            # The running stage counts as far as its latest attempt has gone:
            # its time so far against its history's time for that share. (It
            # once counted by its share, as its first reports lag the work;
            # then a run twice as slow as its history showed it only a third
            # of the way in. The prior damps the first reports enough.)
            actual += in_attempt
            learned += done * durations[k]
        prior = PRIOR_SHARE * math.fsum(known)
        if learned + prior <= 0:
            return 1.0
        lo, hi = SPEED_LIMITS
        return min(hi, max(lo, (actual + prior) / (learned + prior)))

    # ------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "attempt": None if self.attempt is None else list(self.attempt),
            "stage_started": self.stage_started,
            "stage_seconds": self.stage_seconds,
            "stage_pace": self.stage_pace.to_list(),
            "job_pace": self.job_pace.to_list(),
            "last": None if self.last is None else list(self.last),
            "history": None if self.history is None else self.history.to_dict(),
            "retried": self.retried,
            "partial": self.partial,
            "entry": self.entry,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Forecast:
        if not data or "stage_seconds" not in data:
            return cls()  # none yet, or an estimator's state from before history
        attempt, last = data.get("attempt"), data.get("last")
        return cls(
            data.get("started"),
            tuple(attempt) if attempt else None,
            data.get("stage_started"),
            list(data["stage_seconds"]),
            Pace(*data.get("stage_pace", ())),
            Pace(*data.get("job_pace", ())),
            tuple(last) if last else None,
            History.from_dict(data.get("history")),
            list(data.get("retried") or ()),
            data.get("partial"),
            data.get("entry") or 0.0,
        )


def _steady(raw: Estimate, before: float, dt: float, progress: float, was: float) -> Estimate:
    """``raw``, as far as a countdown from ``before`` (the previous estimate,
    ``dt`` seconds ago at ``was`` percent) allows: it may always rise (bad
    news travels at once); it falls by the time that passed plus the share
    of ``before`` that the work since (``progress - was``) used up, and
    closes only ``GLIDE`` of the rest of the way down per report."""
    used = before * max(0.0, progress - was) / max(1e-9, 100.0 - was)
    countdown = max(0.0, before - dt - used)
    if raw.eta >= countdown:
        return raw
    if dt <= 0 and progress <= was:
        return Estimate(countdown, raw.low, raw.high)  # nothing new: no reason to fall
    # Evidence that the estimate was too high closes the gap a little per
    # report: a glide, not a jump. The first estimates of a pipeline that
    # works in bursts are the worst; it must not be stuck with them.
    eta = countdown - GLIDE * (countdown - raw.eta)
    scale = eta / raw.eta if raw.eta > 0 else 1.0
    low = None if raw.low is None else raw.low * scale
    high = None if raw.high is None else max(eta, raw.high * scale)
    return Estimate(eta, low, high)


def _rounded(e: Estimate) -> Estimate:
    """Rounded for the wire, keeping ``low ≤ eta ≤ high``; nothing when not finite."""
    if e.eta is None or not math.isfinite(e.eta):
        return Estimate()
    eta = round(max(0.0, e.eta), 3)
    low = high = None
    if e.low is not None and e.high is not None and math.isfinite(e.low + e.high):
        low = min(round(max(0.0, e.low), 1), eta)
        high = max(round(e.high, 1), eta)
    return Estimate(eta, low, high)


@dataclass(slots=True)
class RateMeter:
    """Units per second of a counted stage (``n`` over time), smoothed the
    same way as the ETA: EMAs of the count's and the time's increments,
    divided. Plain numbers, so it is stored with the job state."""

    smoothing: float = 0.3
    last_t: float | None = None
    last_n: float = 0.0
    dn: EMA | None = None
    dt: EMA | None = None

    def __post_init__(self) -> None:
        self.dn = self.dn or EMA(self.smoothing)
        self.dt = self.dt or EMA(self.smoothing)

    def observe(self, t: float, n: float) -> float | None:
        """Record the count ``n`` at time ``t``; return the rate, or ``None``
        until two observations at different times exist."""
        if self.last_t is not None:
            dt = t - self.last_t
            dn = n - self.last_n
            if dt > 0 and dn >= 0:  # a count that went back says nothing of the rate
                self.dn.update(dn)
                self.dt.update(dt)
            elif dt <= 0:
                return self.rate  # same instant: keep the last sample as it was
        self.last_t, self.last_n = t, n
        return self.rate

    @property
    def rate(self) -> float | None:
        if not self.dt.calls or self.dt.value <= 0:
            return None
        return round(self.dn.value / self.dt.value, 4)

    def to_dict(self) -> dict:
        return {
            "last_t": self.last_t,
            "last_n": self.last_n,
            "dn": [self.dn.last, self.dn.calls],
            "dt": [self.dt.last, self.dt.calls],
        }

    @classmethod
    def from_dict(cls, data: dict | None, smoothing: float = 0.3) -> RateMeter:
        if not data:
            return cls(smoothing)
        return cls(
            smoothing,
            data.get("last_t"),
            data.get("last_n", 0.0),
            EMA(smoothing, *data.get("dn", (0.0, 0))),
            EMA(smoothing, *data.get("dt", (0.0, 0))),
        )
