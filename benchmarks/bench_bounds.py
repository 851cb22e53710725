"""Measure what an uploaded edit file with many pairs costs the demo (the numbers behind `DemoConfig.max_pairs`).

For each number of pairs N, a fresh process loads the toy model, reads an edit file listing N pairs (as `/upload`
does) and solves the session's edit of all of them (as the next Edit click does, holding the shared pipeline: the
time another user's click waits). It prints the peak resident memory over the process's start and the seconds of the
solve. With `--bounded` the upload goes through the demo's checks (`DemoRuntime.load_edit`), so a file over the bound
is refused: the time and memory of the refusal are printed instead.

Usage: `python benchmarks/bench_bounds.py [--pairs 1 16 64 256 1024] [--bounded]`
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--bounded", action="store_true", help="upload through the demo's checks")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.bounded)))
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
