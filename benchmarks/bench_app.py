"""Benchmark the demo's default click: the edit, then the original and the edited model on the source, 5 positives and
5 negatives with the default seeds and steps (toy model: 11 prompts × 4 seeds × 2 models = 88 images), scored by CLIP.

Prints, for the library call (`time_core.demo.run_edit`) and end to end through the running app (`gradio_client`
calling the `/edit` endpoint, images encoded and transferred):

- cold: the cache of original images is empty, so all 88 images are generated;
- cached: the same request with another λ, so only the 44 edited images are generated.

The app timings run from the request to the final result (images encoded and served, not downloaded by the client).
`OMP_WAIT_POLICY` defaults to `PASSIVE`, as in `app.py`.

Usage: `python benchmarks/bench_app.py [--model toy] [--repeats 3] [--threads N] [--skip-app]`
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

    cold, cached, originals = [], [], []
    for k in range(args.repeats):
        runtime.cache.clear()
        first, total, images = timed_run(runtime, prompts, 0.1, settings)
        originals.append(first)
        cold.append(total)
        _, total_cached, _ = timed_run(runtime, prompts, 10.0 ** (k - 1), settings)
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
            start = time.perf_counter()
            client.predict(*inputs, "0.1", *tail, api_name="/edit")
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(*inputs, demo.format_lam(10.0 ** (k - 1)), *tail, api_name="/edit")
            cached.append(time.perf_counter() - start)
        print(f"app /edit, cold:   median {statistics.median(cold):6.2f} s  runs {[round(t, 2) for t in cold]}")
        print(f"app /edit, cached: median {statistics.median(cached):6.2f} s  runs {[round(t, 2) for t in cached]}")
    finally:
        blocks.close()


if __name__ == "__main__":
    main()
