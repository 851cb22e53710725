"""Turns on the shared pipeline: one job at a time runs it, and the waiting jobs are served by priority, then in order
of arrival.

Every run of the demo takes a turn for each chunk of its work (an encoding, one pipeline call, a scoring) and gives it
back before it yields to the page, so a long job (a λ sweep, a debiasing search, the background λ grid) never holds
the pipeline for longer than one chunk: an edit that arrives during another user's sweep waits for at most the
sweep's current chunk. The pipeline's tokenizers and scheduler keep per-call state, so two chunks never overlap.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

__all__ = ["BACKGROUND", "EDIT", "LIVE", "LONG", "PipelineTurns"]

# Priorities, most urgent first: a λ moved on the slider, an edit click, a sweep or debiasing search, background work.
LIVE, EDIT, LONG, BACKGROUND = 0, 1, 2, 3


class PipelineTurns:
    """A fair, reentrant lock on the shared pipeline: `with turns.turn(EDIT): ...` waits until no other job holds it
    and no job of a more urgent priority (or of the same priority, arrived earlier) waits.

    A thread that holds the turn may take it again (nested chunks); a turn is never held across a generator's `yield`
    (the next step may run in another thread). `waited` keeps the seconds each turn of the last `history` turns waited,
    by priority, for the benchmark and the tests.
    """

    def __init__(self, history: int = 256) -> None:
        self._condition = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._waiting: list[tuple[int, int]] = []  # a heap of (priority, ticket)
        self._tickets = itertools.count()
        self._history = history
        self.waited: list[tuple[int, float]] = []

    @contextmanager
    def turn(self, priority: int = EDIT) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:  # a nested chunk of the job that holds the turn
                self._depth += 1
                nested = True
            else:
                nested = False
                entry = (priority, next(self._tickets))
                heapq.heappush(self._waiting, entry)
                start = time.perf_counter()
                while self._owner is not None or self._waiting[0] != entry:
                    self._condition.wait()
                heapq.heappop(self._waiting)
                self._owner, self._depth = me, 1
                self.waited = (self.waited + [(priority, time.perf_counter() - start)])[-self._history:]
        try:
            yield
        finally:
            with self._condition:
                self._depth -= 1
                if not nested and self._depth == 0:
                    self._owner = None
                    self._condition.notify_all()

    def stage(self, priority: int = EDIT):
        """A whole stage of a job in one turn when the job is urgent (`priority < LONG`: its chunks follow each other
        without another job between them); for a long or background job, nothing: its chunks take their own turns."""
        return self.turn(priority) if priority < LONG else nullcontext()

    @property
    def busy(self) -> bool:
        """Whether a job holds the pipeline now."""
        with self._condition:
            return self._owner is not None
