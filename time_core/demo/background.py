"""Work the demo does while nobody waits for it, at the lowest priority on the pipeline (`time_core.demo.turns`): after
an edit, the λ grid of its preview rows (so the slider answers from the cache), and at start-up the examples' edits
(so the first page shows results without a click). One worker thread; each task is one chunk (one λ, or one example).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from .live import EditRequest, cached_edited, live_lams, preview_rows
from .turns import BACKGROUND

__all__ = ["ExampleTask", "GridRenderer", "renderer_of"]

logger = logging.getLogger(__name__)


class GridRenderer:
    """A worker thread that renders, one λ at a time, the edited preview rows of recent edits into the runtime's
    cache of edited images. A session's new edit replaces what is left of its previous one.

    Args:
        runtime (`DemoRuntime`): the pipeline and caches.
    """

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self._tasks: deque[tuple[object, Callable[[], None]]] = deque()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = 0
        self._closed = False
        self.done = 0

    def submit(self, owner: object, tasks: Sequence[Callable[[], None]], replaces: object = None) -> None:
        """Queues `tasks` (callables, run in order) for `owner`, dropping the queued tasks of `replaces` and `owner`."""
        with self._condition:  # the same edit from another page load is the same owner
            self._tasks = deque(t for t in self._tasks if not (_same(t[0], owner) or _same(t[0], replaces)))
            self._tasks.extend((owner, task) for task in tasks)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="time-demo-background", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def schedule_grid(self, request: EditRequest, lam: float, replaces: EditRequest | None = None) -> int:
        """Queues the preview rows of `request` at every slider position, one λ and one seed per task: the first seed
        at every λ (nearest to `lam` first), then the next seed; returns how many λ values were queued."""
        lams = [x for x in live_lams(lam) if x != lam]
        seeds = request.settings.seeds
        self.submit(request, [_GridTask(self.runtime, request, x, seed) for seed in seeds for x in lams], replaces)
        return len(lams)

    def pending(self) -> int:
        with self._condition:
            return len(self._tasks) + self._running

    def wait(self, timeout: float) -> bool:
        """Waits until nothing is queued or running (tests, benchmarks); returns whether it got there in time."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._tasks and not self._running, timeout)

    def close(self) -> None:
        """Drops the queued tasks and stops the worker after its current task."""
        with self._condition:
            self._tasks.clear()
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _work(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._tasks) or self._closed)
                if self._closed:
                    return
                _, task = self._tasks.popleft()
                self._running = 1
            try:
                task()
            except Exception:  # a background chunk never takes the app down; the next click reports real errors
                logger.exception("background rendering failed")
            with self._condition:
                self._running = 0
                self.done += 1
                self._condition.notify_all()


def _same(a: object, b: object) -> bool:
    return a is b or (isinstance(a, EditRequest) and a == b)


class _GridTask:
    """One λ and one seed of the background grid (a small chunk: a callable object, so the queue holds no closures)."""

    def __init__(self, runtime, request: EditRequest, lam: float, seed: int) -> None:
        self.runtime, self.request, self.lam, self.seed = runtime, request, lam, seed

    def __call__(self) -> None:
        edit = self.request.prepare(self.runtime, BACKGROUND).solve(self.lam)
        cached_edited(self.runtime, self.request, edit, preview_rows(self.request.rows), [self.seed], BACKGROUND)


class ExampleTask:
    """One example's edit, run at the lowest priority so its images are cached when someone picks it.

    Args:
        runtime (`DemoRuntime`), prompts (`PromptSet`), lam (`float` or `"auto"`), settings (`GenerationSettings`): as
            for `run_edit`, with an empty edit stack.
        auto_preserve (`bool`, *optional*, defaults to `False`): automatic preservation (the knob-free edit needs it).
    """

    def __init__(self, runtime, prompts, lam, settings, auto_preserve: bool = False) -> None:
        self.runtime, self.prompts, self.lam, self.settings = runtime, prompts, lam, settings
        self.auto_preserve = auto_preserve

    def __call__(self) -> None:
        from .edit_run import run_edit
        from .session import SessionEdits

        session = SessionEdits(auto_preserve=self.auto_preserve)
        for _ in run_edit(self.runtime, session, self.prompts, self.lam, self.settings, priority=BACKGROUND):
            pass


_LOCK = threading.Lock()


def renderer_of(runtime) -> GridRenderer:
    """The runtime's `GridRenderer`, started on first use."""
    with _LOCK:
        if runtime.renderer is None:
            runtime.renderer = GridRenderer(runtime)
        return runtime.renderer
