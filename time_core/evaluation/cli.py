"""The evaluation and debiasing commands: `time-evaluate` / `python -m time_core.evaluate` and `time-debias` /
`python -m time_core.debias`. What they run is `time_core.evaluation.benchmark` and `time_core.evaluation.debiasing`.

As commands (`run_command`), bad input, a results folder of another configuration and an output that cannot be
written end them with one line naming the problem and exit status 2, checked before any model loads where possible;
Ctrl-C with one line and status 130 (what was finished is kept: the same command resumes)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from safetensors import SafetensorError

from ..cli.command import OneLineParser, fail
from ..methods import DEFAULT_METHOD, METHODS, get_method
from ..solver import parse_lam
from ..models import ModelLoadError, UnsupportedModelError, check_model
from . import benchmark, debiasing, experiments
from .classifiers import default_classifier
from .scoring import ScorerWeightsUnavailableError
from .search import LOG_LAM_MAX, LOG_LAM_MIN

__all__ = ["debias_main", "evaluate_main", "run_command"]

# What ends a command with one line and status 2: bad input, a model or weights that cannot be had, an output that
# cannot be written (full disk included).
INPUT_ERRORS = (ValueError, OSError, ModelLoadError, UnsupportedModelError, ScorerWeightsUnavailableError,
                SafetensorError)


def run_command(prog: str, main: Callable[[Sequence[str] | None, str], object],
                argv: Sequence[str] | None = None) -> int:
    """Runs `main(argv, prog)` as a console command: status 0 when it finishes; one line on stderr and status 2 for
    `INPUT_ERRORS` (and `SystemExit` with a message), status 130 for Ctrl-C."""
    try:
        main(argv, prog)
    except KeyboardInterrupt:
        fail(prog, "interrupted; what was finished is kept, and the same command resumes", status=130)
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            fail(prog, exit_.code.removeprefix("error: "))
        raise
    except INPUT_ERRORS as error:
        fail(prog, str(error))
    return 0


def _parser(prog: str, doc: str, preset_help: str, several_methods: bool = False) -> argparse.ArgumentParser:
    """The arguments both commands take: preset, model, classifier, seeds, method(s) and options, output folder."""
    parser = OneLineParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help=preset_help)
    parser.add_argument("--model", default="toy", help="'toy', a hub id or a local folder")
    parser.add_argument("--classifier", default=None,
                        help="'colour' (Shapes world), 'toy', 'ViT-B-32' (paper) or 'open_clip:MODEL:PRETRAINED'; "
                             "defaults to 'colour' for the toy model and 'ViT-B-32' otherwise")
    methods = "; ".join(f"{k}: {m.summary} (default λ {m.default_lam:g})" for k, m in sorted(METHODS.items()))
    parser.add_argument("--method", default=[DEFAULT_METHOD] if several_methods else DEFAULT_METHOD,
                        nargs="+" if several_methods else None, choices=sorted(METHODS),
                        help=("editing methods, evaluated side by side in one folder: " if several_methods
                              else "editing method: ") + methods)
    parser.add_argument("--preserve", choices=["auto"], default=None,
                        help="'auto': automatic preservation (prompts derived from the model; see the README)")
    parser.add_argument("--values-only", action="store_true", help="edit only to_v (default: to_k and to_v)")
    parser.add_argument("--no-augment", action="store_true", help="no prompt augmentations")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N entries")
    parser.add_argument("--out", required=True,
                        help="output folder: re-running with it resumes; one of another configuration is refused, and "
                             "unreadable result files in it are set aside and computed again")
    return parser


def lam_value(text: str) -> float | str:
    """A `--lam` value: a number > 0, or `auto` (the knob-free edit)."""
    try:
        return parse_lam(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (or 'auto')") from None


def parse_evaluate_args(argv: Sequence[str] | None = None, prog: str = "time-evaluate") -> argparse.Namespace:
    parser = _parser(prog, benchmark.__doc__, "an edit preset shipped with the package (e.g. shapes) or a JSON path",
                     several_methods=True)
    parser.add_argument("--seeds", type=int, default=24, help="number of seeds (0 .. N-1); the paper uses 24")
    parser.add_argument("--lam", type=lam_value, nargs="+", default=None,
                        help="one or more λ values (each at least 1e-12), for every method (default: each method's own "
                             "default λ); 'auto' (with --preserve auto): the knob-free edit, λ chosen per entry")
    parser.add_argument("--scheduler", default="default",
                        help="sampler: 'default' (the model's own), 'dpm' (DPM-Solver++, fewer steps), 'ddim', 'euler', "
                             "'unipc'")
    parser.add_argument("--seeds-per-unit", type=int, default=4, help="seeds generated together in one work unit")
    parser.add_argument("--oracle-filter", type=float, default=None,
                        help="keep entries whose oracle hit rate (source and positive destinations) is >= this")
    experiments.add_arguments(parser)
    return parser.parse_args(argv)


def evaluate_main(argv: Sequence[str] | None = None, prog: str = "time-evaluate") -> dict | None:
    """Runs the evaluation (sharded over `accelerate launch` processes) and writes `results.json`, `results.md`, plots."""
    args = parse_evaluate_args(argv, prog)
    if args.seeds < 1 or args.seeds_per_unit < 1:
        raise SystemExit("--seeds and --seeds-per-unit must be >= 1")
    check_model(args.model)
    methods = list(dict.fromkeys(args.method))
    lams = {m: tuple(args.lam) if args.lam else (get_method(m).default_lam,) for m in methods}
    config = benchmark.EvalConfig(
        preset=args.preset, model=args.model, classifier=args.classifier or default_classifier(args.model),
        seeds=tuple(range(args.seeds)), lams=lams[methods[0]], edit_keys=not args.values_only,
        augment=not args.no_augment, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
        seeds_per_unit=args.seeds_per_unit, limit=args.limit, method=methods[0], preserve=args.preserve or "",
    )
    config = experiments.configure(args, config)
    _check_methods(methods, args)
    if len(methods) > 1 and experiments.requested(args, config):
        raise SystemExit("error: several methods go with the plain evaluation; --ablation, --bulk, --quality and the "
                         "fine-tuning options take one --method")
    lams[methods[0]] = config.lams  # --weight-decay may have replaced them
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo across CPU processes when there is no GPU
    out = Path(args.out)
    if experiments.requested(args, config):  # ablation, bulk editing, method options, generation quality
        return experiments.run(args, config, out, state, _write_evaluation)
    if state.is_main_process:
        benchmark.check_eval_dir(out, config)
    state.wait_for_everyone()
    start = time.perf_counter()
    benchmark.evaluate(config, out, process_index=state.process_index, num_processes=state.num_processes,
                       device=state.device, methods=lams)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    report = benchmark.merge_results(config, out, args.oracle_filter, methods=lams)
    _write_evaluation(report, out, start)
    return report


def _check_methods(methods: list[str], args: argparse.Namespace) -> list[str]:
    """The methods, after checking that each supports the options asked for (before any model loads)."""
    problems = [problem for name in methods
                for problem in get_method(name).unsupported(args.values_only, args.preserve == "auto")]
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    return methods


def _write_evaluation(report: dict, out: Path, start: float) -> None:
    from ..files import write_text_atomic
    from .report import markdown_table, write_plots
    from .results import write_json

    speed = benchmark.throughput(out)
    write_json(out / "results.json", {**report, "throughput": speed})
    table = markdown_table(report)
    write_text_atomic(out / "results.md", table)
    plots = write_plots(report, out)
    print(table)
    if speed["images_per_second"]:
        print(f"generation: {speed['images']} images in {speed['seconds']:.0f} s of generation "
              f"({speed['images_per_second']:.2f} images/s per process)")
    print(f"written: {out / 'results.json'}, {out / 'results.md'}" + "".join(f", {p}" for p in plots)
          + f" ({time.perf_counter() - start:.0f} s)")


def parse_debias_args(argv: Sequence[str] | None = None, prog: str = "time-debias") -> argparse.Namespace:
    parser = _parser(prog, debiasing.__doc__, "a debias preset shipped with the package (e.g. shapes_debias) or a JSON path")
    parser.add_argument("--seeds", type=int, default=24, help="images per prompt (seeds 0 .. N-1)")
    parser.add_argument("--target", type=float, default=0.5, help="target share F_p, in (0, 1)")
    parser.add_argument("--tolerance", type=float, default=0.1, help="stop when |F_p - target| / target < this")
    parser.add_argument("--log-lam-min", type=float, default=LOG_LAM_MIN, help="smallest log10 λ searched")
    parser.add_argument("--log-lam-max", type=float, default=LOG_LAM_MAX, help="largest log10 λ searched")
    parser.add_argument("--max-iterations", type=int, default=8, help="cap on binary-search steps")
    parser.add_argument("--no-multi", action="store_true", help="skip TIME Multi")
    return parser.parse_args(argv)


def debias_main(argv: Sequence[str] | None = None, prog: str = "time-debias") -> dict:
    """Runs the debiasing of every entry (and TIME Multi) and writes `results.json` and `results.md`."""
    from .report import debias_table
    from .results import write_report

    args = parse_debias_args(argv, prog)
    _check_methods([args.method], args)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    if args.max_iterations < 1:
        raise SystemExit("--max-iterations must be >= 1")
    config = debiasing.DebiasConfig(
        preset=args.preset, model=args.model, classifier=args.classifier or default_classifier(args.model),
        seeds=tuple(range(args.seeds)), target=args.target, tolerance=args.tolerance, log_lam_min=args.log_lam_min,
        log_lam_max=args.log_lam_max, max_iterations=args.max_iterations, edit_keys=not args.values_only,
        augment=not args.no_augment, steps=args.steps, guidance=args.guidance, limit=args.limit,
        multi=not args.no_multi, method=args.method, preserve=args.preserve or "",
    )
    start = time.perf_counter()
    try:
        report = debiasing.run_debias_benchmark(config, args.out)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    write_report(Path(args.out), report, debias_table(report), start)
    return report
