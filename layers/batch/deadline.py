"""Finishing in time, or saying so: never a silent Lambda timeout.

The clock is the invocation's ``context.get_remaining_time_in_millis()`` less a reserve
(5% of the time left at the start, 2–30 s) kept for aborting the upload and writing the
error record. While downloading and between chunks the job projects the time it still
needs from the rate measured so far:

* the object would not fit even a whole fresh invocation → :class:`BatchInputError`
  (final): the error record gives the measured rows/s and how many rows per file would fit;
* it would fit a fresh invocation but not what is left of this one (an earlier object of
  the same SQS batch used the time) → :class:`OutOfTime`, retryable: the message fails and
  SQS redelivers it to a fresh invocation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from layers.batch.errors import BatchInputError

MIN_RESERVE_S, MAX_RESERVE_S, RESERVE_FRACTION = 2.0, 30.0, 0.05
SAFETY = 0.8  # advise files that take at most 80% of an invocation
MIN_MEASURE_S = 0.2  # do not project from less than this much measured work


class OutOfTime(Exception):
    """Not enough of *this* invocation left; a fresh one could do it (retryable)."""


class Deadline:
    """The invocation's time limit, from the Lambda context (None: no limit, e.g. a script)."""

    def __init__(self, remaining_ms: Callable[[], int] | None) -> None:
        self._remaining_ms = remaining_ms
        start = self.remaining_s()
        self.reserve_s = min(MAX_RESERVE_S, max(MIN_RESERVE_S, RESERVE_FRACTION * start)) if math.isfinite(start) else 0.0
        self.invocation_s = start - self.reserve_s  # usable time of a whole invocation (at least)

    def remaining_s(self) -> float:
        return self._remaining_ms() / 1000.0 if self._remaining_ms else math.inf

    def usable_s(self) -> float:
        return self.remaining_s() - self.reserve_s

    def clock(self, ref_label: str) -> ObjectClock:
        return ObjectClock(self, ref_label)


class ObjectClock:
    """Projections for one object: download first, then rows."""

    def __init__(self, deadline: Deadline, label: str) -> None:
        self.deadline, self.label = deadline, label
        self.started = time.monotonic()
        self.started_usable = deadline.usable_s()
        if self.started_usable <= 0:
            raise OutOfTime(f"{label}: no time left in this invocation; it will be retried")
        self.rows_started: float | None = None

    def check_download(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed < MIN_MEASURE_S or done <= 0:
            return
        rate = done / elapsed
        need = (total - done) / rate
        if need <= self.deadline.usable_s():
            return
        if total / rate <= self.deadline.invocation_s * SAFETY:
            raise OutOfTime(f"{self.label}: download needs {need:.0f} s more than this invocation has left")
        part_mb = max(1, int(rate * self.deadline.invocation_s * SAFETY / 2 / 1e6))
        raise BatchInputError(
            f"the object is too large to download and process in one invocation: {total / 1e6:.0f} MB at "
            f"the measured {rate / 1e6:.1f} MB/s need about {total / rate:.0f} s to download alone, and "
            f"the function has {self.deadline.invocation_s:.0f} s. Split it into files of at most "
            f"{part_mb} MB (about {math.ceil(total / 1e6 / part_mb)} files) and upload those instead.",
            size_bytes=total,
        )

    def start_rows(self) -> None:
        self.rows_started = time.monotonic()

    def check_rows(self, done: int, total: int) -> None:
        if self.rows_started is None or done <= 0:
            return
        now = time.monotonic()
        elapsed = now - self.rows_started
        if elapsed < MIN_MEASURE_S:
            return
        rate = done / elapsed
        need = (total - done) / rate
        if need <= self.deadline.usable_s():
            return
        prep_per_row = (self.rows_started - self.started) / max(1, total)
        per_row = prep_per_row + 1.0 / rate
        capacity = max(1, int(self.deadline.invocation_s * SAFETY / per_row))
        if total <= capacity:
            raise OutOfTime(f"{self.label}: {need:.0f} s of rows left, more than this invocation has")
        raise BatchInputError(
            f"the object is too large to finish in one invocation: {total} rows at the measured "
            f"{rate:,.0f} rows/s (plus download and checks) need about {total * per_row:.0f} s, and the "
            f"function has {self.deadline.invocation_s:.0f} s. Split it into files of at most {capacity} "
            f"rows (about {math.ceil(total / capacity)} files) and upload those instead.",
            rows=total, rows_per_s=round(rate), max_rows_per_file=capacity,
        )
