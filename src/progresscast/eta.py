"""ETA from a smoothed rate of overall progress, and the rate of a counted
stage, as tqdm does them.

tqdm smooths the increments of work (dn) and of time (dt) separately with a
bias-corrected exponential moving average and divides the two; a single slow
or fast step moves the estimate only a little, and the first samples are not
dragged towards zero by the EMA's initial value.
"""

from __future__ import annotations

from dataclasses import dataclass


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


#: Samples needed before an ETA is reported: one rate is noise, two is a trend.
MIN_SAMPLES = 2


@dataclass(slots=True)
class EtaEstimator:
    """Turns (time, overall percent) observations into ``eta_seconds``.

    Its fields are plain numbers so a job's estimator can be stored with the
    job state and picked up by another process.
    """

    smoothing: float = 0.3
    last_t: float | None = None
    last_p: float = 0.0
    dp: EMA | None = None
    dt: EMA | None = None

    def __post_init__(self) -> None:
        self.dp = self.dp or EMA(self.smoothing)
        self.dt = self.dt or EMA(self.smoothing)

    def observe(self, t: float, progress: float) -> float | None:
        """Record that the job was at ``progress`` percent at time ``t``; return the ETA."""
        if self.last_t is not None:
            dt = t - self.last_t
            dp = progress - self.last_p
            # Ignore samples with no time or a step back (a retried stage):
            # they say nothing about the forward rate.
            if dt > 0 and dp >= 0:
                self.dp.update(dp)
                self.dt.update(dt)
        self.last_t, self.last_p = t, progress
        return self.eta(progress)

    def eta(self, progress: float) -> float | None:
        """Seconds left at the current smoothed rate, or ``None`` without enough signal."""
        if progress >= 100:
            return 0.0
        if self.dp.calls < MIN_SAMPLES:
            return None
        dp, dt = self.dp.value, self.dt.value
        if dp <= 0 or dt <= 0:
            return None
        return round((100.0 - progress) * dt / dp, 3)

    def to_dict(self) -> dict:
        return {
            "last_t": self.last_t,
            "last_p": self.last_p,
            "dp": [self.dp.last, self.dp.calls],
            "dt": [self.dt.last, self.dt.calls],
        }

    @classmethod
    def from_dict(cls, data: dict | None, smoothing: float = 0.3) -> EtaEstimator:
        if not data:
            return cls(smoothing)
        return cls(
            smoothing,
            data.get("last_t"),
            data.get("last_p", 0.0),
            EMA(smoothing, *data.get("dp", (0.0, 0))),
            EMA(smoothing, *data.get("dt", (0.0, 0))),
        )


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
