"""Measure what an uploaded edit file with many pairs costs the demo (the numbers behind `DemoConfig.max_pairs`).

For each number of pairs N, a fresh process loads the toy model, reads an edit file listing N pairs (as `/upload`
does) and solves the session's edit of all of them (as the next Edit click does, holding the shared pipeline: the
time another user's click waits). It prints the peak resident memory over the process's start and the seconds of the
solve. With `--bounded` the upload goes through the demo's checks (`DemoRuntime.load_edit`), so a file over the bound
is refused: the time and memory of the refusal are printed instead.

With `--app ROOT`, the same through a served app (`ROOT/app.py` on the toy model, so a checkout from before the
bounds can be compared): user A uploads the file and clicks Edit, user B clicks Edit 0.3 s later; it prints B's
wait (alone, then behind A) and the server's peak resident memory.

Usage: `python benchmarks/bench_bounds.py [--pairs 1 16 64 256 1024] [--bounded] [--app ROOT]`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def write_file(pairs: int, folder: Path) -> Path:
    """An edit file listing `pairs` distinct pairs that align on the toy tokenizer (its `M` is the identity on the toy
    text width, 96: the click recomputes the edit from the prompts)."""
    import torch

    from time_core import Edit

    sources = tuple(f"a circle number {i}" for i in range(pairs))
    destinations = tuple(f"a green circle number {i}" for i in range(pairs))
    edit = Edit(M=torch.eye(96, dtype=torch.float64), sources=sources, destinations=destinations, lam=0.1)
    return edit.save(folder / f"pairs{pairs}.safetensors")


def measure(path: str, bounded: bool) -> dict:
    """In this process: load the toy runtime, read the file, solve its edit (or have the upload refused)."""
    import time_core.demo as demo

    runtime = demo.DemoRuntime.load(demo.DemoConfig.for_model("toy"), device="cpu")
    loaded = _peak_mb()
    start = time.perf_counter()
    try:
        if bounded:
            edit = runtime.load_edit(path)
        else:
            edit = demo.load_edit_file(path, runtime.pipe, int(runtime.config.max_upload_mb * 1e6))
        session = demo.SessionEdits.from_edit(edit)
        session.build(runtime.pipe, edit.sources[-1], edit.destinations[-1], 0.1)
        outcome = "solved"
    except ValueError as error:
        outcome = f"refused: {error}"
    seconds = time.perf_counter() - start
    runtime.close()
    return {"loaded_mb": loaded, "peak_mb": _peak_mb(), "seconds": seconds, "outcome": outcome}


def _edit(client, source: str, destination: str, lam: str):
    tests = {"headers": ["role", "prompt", "destination", "type"], "data": [["negative", "a square", "a green square"]]}
    return client.submit(source, destination, tests, lam, True, True, 1, 0, 12, 5.0, 64, api_name="/edit")


def measure_app(root: Path, path: Path, sources: tuple[str, str]) -> dict:
    """User B's click alone and behind user A's upload of `path` and click, on `ROOT/app.py`; the server's peak RSS."""
    import socket
    import urllib.request

    from gradio_client import Client, handle_file

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    server = subprocess.Popen([sys.executable, str(root / "app.py"), "--model", "toy", "--port", str(port)], cwd=root,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(480):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        b = Client(url, verbose=False)
        _edit(b, "a circle", "a green circle", "0.1").result()  # warm: B's originals are cached from here on
        start = time.perf_counter()
        _edit(b, "a circle", "a green circle", "0.2").result()
        alone = time.perf_counter() - start
        a = Client(url, verbose=False)
        try:
            a.predict(handle_file(str(path)), api_name="/upload")
            upload = "accepted"
        except Exception as error:  # noqa: BLE001 - the app's refusal, as a client sees it
            upload = f"refused: {str(error)[:60]}"
        job = _edit(a, *sources, "0.1")
        time.sleep(0.3)
        start = time.perf_counter()
        _edit(b, "a circle", "a green circle", "0.3").result()
        behind = time.perf_counter() - start
        job.result()
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"upload": upload, "alone": alone, "behind": behind, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--bounded", action="store_true", help="upload through the demo's checks")
    parser.add_argument("--app", type=Path, default=None, help="measure through ROOT/app.py")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.bounded)))
        return
    if args.app:
        print("| pairs | upload | B's click alone (s) | B's click behind A's (s) | server peak RSS (MB) |")
        print("|---:|---|---:|---:|---:|")
        with tempfile.TemporaryDirectory() as tmp:
            for pairs in args.pairs:
                path = write_file(pairs, Path(tmp))
                last = (f"a circle number {pairs - 1}", f"a green circle number {pairs - 1}")
                r = measure_app(args.app.resolve(), path, last)
                print(f"| {pairs} | {r['upload']} | {r['alone']:.1f} | {r['behind']:.1f} | {r['peak_mb']:.0f} |",
                      flush=True)
        return
    print("| pairs | file (kB) | peak RSS (MB) | over the loaded model (MB) | seconds | outcome |")
    print("|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for pairs in args.pairs:
            path = write_file(pairs, Path(tmp))
            command = [sys.executable, __file__, "--child", str(path)] + (["--bounded"] if args.bounded else [])
            result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            print(f"| {pairs} | {path.stat().st_size / 1e3:.0f} | {result['peak_mb']:.0f} | "
                  f"{result['peak_mb'] - result['loaded_mb']:.0f} | {result['seconds']:.2f} | "
                  f"{result['outcome'][:70]} |", flush=True)


if __name__ == "__main__":
    main()
