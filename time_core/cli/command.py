"""`time-edit` / `python -m time_core`: compute an edit, write it (and a LoRA), render a before/after preview.

```bash
time-edit "a pack of roses" "a pack of blue roses" --model toy --out roses.safetensors
time-edit "a pack of roses" "a pack of blue roses" --model CompVis/stable-diffusion-v1-4 --lam 0.1 \\
    --out roses.safetensors --lora roses-lora.safetensors --rank 64 --lora-format kohya --preview 4
```

Every argument is checked before the model loads: bad input (a prompt, λ, an option, a model folder that does not
exist, an output that exists without `--force` or cannot be written) exits with status 2 and one line naming the
problem; Ctrl-C exits with status 130 and one line. Files are written atomically, with the permissions of the umask.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from safetensors import SafetensorError

from ..edit import EditFileError
from ..export import DTYPES, FORMATS, export_lora
from ..export.factors import check_rank
from ..files import check_new_file, check_writable_folder
from ..methods import DEFAULT_METHOD, METHODS, compute_edit, get_method
from ..models import ModelLoadError, UnsupportedModelError, check_model, generation_defaults, load_pipeline
from ..prompts import AUTO_PRESERVE, PromptError, check_preserve_weight, check_prompt
from ..solver import is_auto, parse_lam
from .preview import preview_files, write_preview

__all__ = ["OneLineParser", "edit_main", "fail", "main", "parse_args"]

PROG = "time-edit"
MAX_PREVIEW = 64  # seeds in one preview


class UsageError(ValueError):
    """Bad command-line input."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: `PROG: error: MESSAGE (see PROG --help)` and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    methods = "; ".join(f"{name}: {method.summary}" for name, method in sorted(METHODS.items()))
    parser = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the under-specified prompt, e.g. 'a pack of roses' (at most 1000 characters)")
    parser.add_argument("destination", help="the prompt stating the wanted attribute, e.g. 'a pack of blue roses'")
    parser.add_argument("--model", default="toy", help="'toy', a hub id or a local folder (default: toy)")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS), help=f"editing method: {methods}")
    parser.add_argument("--lam", default=None,
                        help="λ, at least 1e-12 (default: the method's, TIME: 0.1); 'auto' with --preserve auto: the "
                             "knob-free edit, λ chosen for this edit")
    parser.add_argument("--values-only", action="store_true", help="edit only to_v (default: to_k and to_v)")
    parser.add_argument("--no-augment", action="store_true", help="no prompt augmentations")
    parser.add_argument("--preserve", nargs="+", default=(), metavar="PROMPT",
                        help="prompts to keep as they are, or 'auto' alone: derived from the model, with their weight "
                             "(TIME and Diff-QuickFix)")
    parser.add_argument("--preserve-weight", type=float, default=None, metavar="W",
                        help="the weight of the --preserve prompts (default: 1.0)")
    parser.add_argument("--out", required=True,
                        help="the edit file to write (.safetensors); an existing file is replaced only with --force")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out or --lora file and the preview's images")
    lora = parser.add_argument_group("LoRA export")
    lora.add_argument("--lora", default=None, help="also write the edit as a LoRA file (.safetensors)")
    lora.add_argument("--rank", type=int, default=None, help="largest rank per layer (default: full rank, exact)")
    lora.add_argument("--lora-format", choices=FORMATS, default="peft",
                      help="peft: diffusers' pipe.load_lora_weights; kohya: AUTOMATIC1111 / ComfyUI (default: peft)")
    lora.add_argument("--lora-dtype", choices=sorted(DTYPES), default="float32", help="dtype of the stored factors")
    preview = parser.add_argument_group("preview")
    preview.add_argument("--preview", type=int, default=0, metavar="N",
                         help="render N seeds of the source before and after the edit")
    preview.add_argument("--preview-dir", default=None, help="folder for the preview PNGs (default: OUT-preview/)")
    preview.add_argument("--first-seed", type=int, default=0, help="the preview's first seed (default: 0)")
    preview.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    preview.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return parser


def _output_file(value: str, flag: str, force: bool) -> Path:
    path = Path(value)
    if path.suffix != ".safetensors":
        raise UsageError(f"{flag} must name a .safetensors file, got {value!r}")
    if path.is_dir():
        raise UsageError(f"{flag} {value} is a folder; give a file name ending with .safetensors")
    try:
        return check_new_file(path, flag, force)
    except OSError as error:
        raise UsageError(str(error)) from None


def _preview_dir(args: argparse.Namespace) -> Path:
    """The preview's folder, checked: writable (or creatable), and without images of the same names unless `--force`."""
    folder = Path(args.preview_dir) if args.preview_dir else args.out.with_name(f"{args.out.stem}-preview")
    if not args.preview:
        return folder
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--preview-dir {folder} exists and is not a folder")
    try:
        check_writable_folder(folder if folder.is_dir() else folder.resolve().parent, f"--preview-dir {folder}")
    except OSError as error:
        raise UsageError(str(error)) from None
    seeds = range(args.first_seed, args.first_seed + args.preview)
    existing = [p.name for p in preview_files(folder, seeds) if p.exists()]
    if existing and not args.force:
        raise UsageError(f"--preview-dir {folder} holds {existing[0]}; pass --force to replace the preview")
    return folder


def _preserve(prompts: Sequence[str], method: str) -> str | tuple[str, ...]:
    """`--preserve`: `"auto"` for the word auto alone (if the method derives prompts), else the checked prompts."""
    if AUTO_PRESERVE not in [p.strip() for p in prompts]:
        return tuple(check_prompt(p, "preserve prompt") for p in prompts)
    if len(prompts) > 1:
        raise UsageError("--preserve auto derives the prompts itself: give it alone, or list prompts without 'auto'")
    if problems := get_method(method).unsupported(auto_preserve=True):
        raise UsageError("; ".join(problems))
    return AUTO_PRESERVE


def _check(args: argparse.Namespace) -> argparse.Namespace:
    """Checks every argument that can be checked without the model; raises `UsageError` / `PromptError`."""
    args.source, args.destination = check_prompt(args.source, "source"), check_prompt(args.destination, "destination")
    check_model(args.model)
    if args.lam is not None:
        args.lam = parse_lam(args.lam)
    if problems := get_method(args.method).unsupported(values_only=args.values_only):
        raise UsageError("; ".join(problems))
    args.preserve = _preserve(args.preserve, args.method)
    if is_auto(args.lam) and args.preserve != AUTO_PRESERVE:
        raise UsageError("--lam auto needs --preserve auto: λ is chosen on the context sets it builds")
    if args.preserve_weight is not None:
        if args.preserve == AUTO_PRESERVE:
            raise UsageError("--preserve-weight does not apply to --preserve auto, which sets its weight itself")
        if not args.preserve:
            raise UsageError("--preserve-weight needs --preserve PROMPT ...")
        args.preserve_weight = check_preserve_weight(args.preserve_weight)
    args.out = _output_file(args.out, "--out", args.force)
    if args.lora is not None:
        args.lora = _output_file(args.lora, "--lora", args.force)
        if args.lora.resolve() == args.out.resolve():
            raise UsageError("--lora and --out name the same file")
    elif args.rank is not None or args.lora_format != "peft" or args.lora_dtype != "float32":
        raise UsageError("--rank, --lora-format and --lora-dtype need --lora PATH")
    check_rank(args.rank)
    if not 0 <= args.preview <= MAX_PREVIEW:
        raise UsageError(f"--preview must be between 0 and {MAX_PREVIEW} seeds, got {args.preview}")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    args.preview_dir = _preview_dir(args)
    return args


def parse_args(argv: Sequence[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    """The parsed and checked arguments; exits with status 2 and one line on bad input."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        return _check(args)
    except (UsageError, ValueError, ModelLoadError) as error:
        parser.error(str(error))


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.2f} MB"


def run(args: argparse.Namespace) -> dict:
    """Loads the model, computes and writes the edit, the LoRA and the preview; returns what was written."""
    start = time.perf_counter()
    print(f"loading {args.model} ...", file=sys.stderr)
    pipe = load_pipeline(args.model, device=args.device)
    method = get_method(args.method)
    lam = method.default_lam if args.lam is None else args.lam
    print(f"computing the {args.method} edit (λ = {lam if is_auto(lam) else format(lam, 'g')}) ...", file=sys.stderr)
    edit = compute_edit(pipe, args.source, args.destination, lam=lam, edit_keys=not args.values_only,
                        augment=not args.no_augment, preserve=args.preserve,
                        preserve_weight=1.0 if args.preserve_weight is None else args.preserve_weight,
                        method=args.method)
    edit.save(args.out)
    written = {"edit": str(args.out)}
    chosen = " (chosen for this edit)" if edit.lam_auto else ""
    print(f"edit: {args.out} ({_mb(args.out)}; {args.method}, λ = {edit.lam:.4g}{chosen})")
    if edit.preserve:
        derived = "derived " if edit.auto_preserve else ""
        shown = "; ".join(edit.preserve[:8]) + (f"; ... +{len(edit.preserve) - 8}" if len(edit.preserve) > 8 else "")
        print(f"preserved: {len(edit.preserve)} {derived}prompts at weight {edit.preserve_weight:.4g} ({shown})")
    if edit.context:
        print(f"context: {edit.context}")
    if args.lora is not None:
        report = export_lora(pipe, edit, args.lora, rank=args.rank, lora_format=args.lora_format,
                             dtype=args.lora_dtype, progress=True)
        written["lora"] = str(report.path)
        ranks = sorted(set(report.ranks.values()))
        print(f"lora: {report.path} ({_mb(report.path)}; {report.format}, {len(report.ranks)} layers, rank "
              f"{ranks[0] if len(ranks) == 1 else f'{ranks[0]}-{ranks[-1]}'}, relative error max "
              f"{report.max_error:.2e} / mean {report.mean_error:.2e})")
    if args.preview:
        defaults = generation_defaults(pipe)
        steps = args.steps or defaults.steps
        guidance = defaults.guidance if args.guidance is None else args.guidance
        seeds = range(args.first_seed, args.first_seed + args.preview)
        paths = write_preview(pipe, edit, args.source, seeds, args.preview_dir, steps, guidance)
        written["preview"] = [str(p) for p in paths]
        print(f"preview: {args.preview_dir} ({args.preview} seeds, original and edited, {steps} steps; "
              f"{paths[-1].name})")
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return written


def fail(prog: str, message: str, status: int = 2):
    """Ends a command: `PROG: error: MESSAGE` on one line of stderr, and exit status `status`."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)  # one line, no traceback
    raise SystemExit(status)


def edit_main(argv: Sequence[str] | None = None, prog: str = PROG) -> dict:
    """The `time-edit` command; bad input (a prompt, λ, an unloadable model, an unwritable path) exits with status 2."""
    args = parse_args(argv, prog)
    try:
        return run(args)
    except (PromptError, EditFileError, UnsupportedModelError, ModelLoadError, ValueError, OSError,
            SafetensorError) as error:
        fail(prog, str(error))
    except KeyboardInterrupt:
        fail(prog, "interrupted", status=130)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `time-edit`: `edit_main`, exit status 0 on success."""
    edit_main(argv)
    return 0
