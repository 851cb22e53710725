"""Benchmark the demo's default click: the edit, then the original and the edited model on the source, 5 positives and
5 negatives with the default seeds and steps (toy model: 11 prompts × 4 seeds × 2 models = 88 images), scored by CLIP.

Prints, for the library call (`time_core.demo.run_edit`) and end to end through the running app (`gradio_client`
calling the `/edit` endpoint, images encoded and transferred):

- cold: the cache of original images is empty, so all 88 images are generated;
- cached: the same request with another λ, so only the 44 edited images are generated;
- live λ: after an edit, a new λ from the slider (`/live`, what moving the slider runs): the time to the preview rows
  (the source, first positive and first negative) and to every row, with the background λ grid finished (a slider
  position) and for a λ off the grid;
- an edit during another user's λ sweep (12 λ × 4 seeds), against the same edit idle (`--skip-fair` leaves it out).

The app timings run from the request to the final result (images encoded and served, not downloaded by the client).
`OMP_WAIT_POLICY` defaults to `PASSIVE`, as in `app.py`.

Usage: `python benchmarks/bench_app.py [--model toy] [--repeats 3] [--threads N] [--skip-app] [--skip-fair]`
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads

import torch  # noqa: E402

import time_core.demo as demo  # noqa: E402

PRESET = {"toy": "shapes:0", "sd": "timed_validation:0"}


def timed_run(runtime: demo.DemoRuntime, prompts: demo.PromptSet, lam: float, settings) -> tuple[float, float, int]:
    """Seconds to the originals, seconds to the end, and the number of images."""
    start = time.perf_counter()
    first = None
    for update in demo.run_edit(runtime, demo.SessionEdits(), prompts, lam, settings):  # noqa: B007 (the last is read below)
        if first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, len(update.original) + len(update.edited)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--family", default=None, choices=demo.FAMILIES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-app", action="store_true", help="only time the library call")
    parser.add_argument("--skip-fair", action="store_true", help="leave out the edit during a sweep")
    args = parser.parse_args()

    config = demo.DemoConfig.for_model(args.model, family=args.family, num_threads=args.threads)
    runtime = demo.DemoRuntime.load(config)
    prompts = demo.preset_prompts(PRESET[config.family])
    settings = runtime.settings()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {config.model} on {runtime.pipe.device}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}")
    print(f"request: {prompts.source!r} -> {prompts.destination!r}, {len(prompts.rows())} prompts × "
          f"{len(settings.seeds)} seeds, {settings.steps} steps, guidance {settings.guidance}, {settings.size} px")

    # warm-up: one small call loads kernels and the scorer's text features
    warm = runtime.settings(num_seeds=1, steps=1)
    list(demo.run_edit(runtime, demo.SessionEdits(), prompts, 0.1, warm))
    runtime.cache.clear()
    runtime.edited_cache.clear()

    cold, cached, originals = [], [], []
    for k in range(args.repeats):
        runtime.cache.clear()
        runtime.edited_cache.clear()
        first, total, images = timed_run(runtime, prompts, 0.1, settings)
        originals.append(first)
        cold.append(total)
        _, total_cached, _ = timed_run(runtime, prompts, 3 * 10.0 ** (k - 1), settings)
        cached.append(total_cached)
    print(f"library, cold   ({images} images): median {statistics.median(cold):6.2f} s  "
          f"(originals shown after {statistics.median(originals):.2f} s)  runs {[round(t, 2) for t in cold]}")
    print(f"library, cached ({images // 2} images): median {statistics.median(cached):6.2f} s  "
          f"runs {[round(t, 2) for t in cached]}")

    if args.skip_app:
        return
    from gradio_client import Client

    import app as demo_app

    blocks = demo_app.build_demo(runtime)  # queued as app.py serves it
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        # the client does not download the 88 PNGs (a browser fetches them in parallel as they are shown)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        table = {"headers": list(demo.TEST_HEADERS), "data": prompts.table()}
        inputs = [prompts.source, prompts.destination, table]
        tail = [True, True, len(settings.seeds), 0, settings.steps, settings.guidance, settings.size]
        cold, cached = [], []
        for k in range(args.repeats):
            runtime.cache.clear()
            runtime.edited_cache.clear()
            start = time.perf_counter()
            client.predict(*inputs, "0.1", *tail, api_name="/edit")
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(*inputs, demo.lam_text(3 * 10.0 ** (k - 1)), *tail, api_name="/edit")
            cached.append(time.perf_counter() - start)
        print(f"app /edit, cold:   median {statistics.median(cold):6.2f} s  runs {[round(t, 2) for t in cold]}")
        print(f"app /edit, cached: median {statistics.median(cached):6.2f} s  runs {[round(t, 2) for t in cached]}")
        live_latency(client, runtime, inputs, tail, args.repeats)
        if not args.skip_fair:
            fair_queue(port, client, inputs, tail, args.repeats)
    finally:
        blocks.close()
        if runtime.renderer is not None:
            runtime.renderer.close()


def timed_live(client, lam: str) -> tuple[float, float]:
    """Seconds to the first grid of a new λ (the preview rows, or everything when cached) and to every row."""
    start, first = time.perf_counter(), None
    for output in client.submit(lam, api_name="/live"):
        if first is None and "comparison" in str(output[1]):
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def live_latency(client, runtime: demo.DemoRuntime, inputs, tail, repeats: int) -> None:
    """Live λ after an edit at λ = 0.1: slider positions once the background grid is done, and λ values off it."""
    client.predict(*inputs, "0.1", *tail, api_name="/edit")
    runtime.renderer.wait(1800)
    on_grid = [demo.live_lams(0.1)[k] for k in range(5, 5 + repeats)]
    off_grid = [0.0123 * (k + 2) for k in range(repeats)]
    for name, lams in (("slider position (background grid done)", on_grid), ("typed λ off the grid", off_grid)):
        runs = [timed_live(client, demo.lam_text(lam)) for lam in lams]
        rounded = [tuple(round(t, 2) for t in r) for r in runs]
        print(f"app /live, {name}: preview rows median {statistics.median(r[0] for r in runs):5.2f} s, every row "
              f"median {statistics.median(r[1] for r in runs):5.2f} s  runs {rounded}")


def fair_queue(port: int, client, inputs, tail, repeats: int) -> None:
    """The same cached-originals edit idle and while another client sweeps 12 λ values with 4 seeds."""
    import threading

    from gradio_client import Client

    sweeper = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    idle, busy = [], []
    for k in range(repeats):
        start = time.perf_counter()
        client.predict(*inputs, demo.lam_text(0.31 + k / 100), *tail, api_name="/edit")
        idle.append(time.perf_counter() - start)
        thread = threading.Thread(target=sweeper.predict, args=(*inputs, True, True, -3, 6, 12, 4, 0, None, None,
                                                                None), kwargs={"api_name": "/sweep"})
        thread.start()
        time.sleep(3.0)
        start = time.perf_counter()
        client.predict(*inputs, demo.lam_text(0.51 + k / 100), *tail, api_name="/edit")
        busy.append(time.perf_counter() - start)
        thread.join()
    idle_median = statistics.median(idle)
    print(f"app /edit idle:           median {idle_median:6.2f} s  runs {[round(t, 2) for t in idle]}")
    print(f"app /edit during a sweep: median {statistics.median(busy):6.2f} s  runs {[round(t, 2) for t in busy]}  "
          f"(bound 2 × idle + 3 s = {2 * idle_median + 3:.2f} s)")


if __name__ == "__main__":
    main()
