"""The demo's runtime: the loaded pipeline and classifier, shared read-only by every session."""

from __future__ import annotations

import atexit
import copy
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..edit import BaseEdit
from ..evaluation.classifiers import ClipClassifier, ColourClassifier
from .cache import OriginalCache
from .config import TOY, DemoConfig
from .exports import check_uploaded_edit, load_edit_file, save_edit_file
from .inputs import GenerationSettings, parse_settings
from .turns import PipelineTurns

__all__ = ["DemoRuntime"]


@dataclass
class DemoRuntime:
    """What every session shares: the pipeline (never written), the CLIP classifier, the configuration and the cache of
    original images. Sessions keep their own edits in `SessionEdits`.

    Args:
        pipe: the diffusers pipeline.
        classifier (`time_core.evaluation.classifiers.ClipClassifier`): the zero-shot classifier of Sec. 5.4.
        config (`DemoConfig`): defaults and limits.
        cache (`OriginalCache`): original images.
        workdir (`Path`): where files for download are written (at most `config.max_edit_files` edit files and as many
            LoRA files) and the page's images (`images/`, bounded by `ImageFiles`); `close` removes the folder.
        tokenizer (*optional*): what the light events that run beside a generation (a pair's token check) tokenize
            with; by default a private copy of `pipe.tokenizer`. A fast tokenizer keeps per-call padding and
            truncation settings, so a call from another thread can change what the pipeline's own call returns.
        turns (`PipelineTurns`, *optional*): who runs the pipeline next (one chunk of one job at a time).
        edited_cache (`OriginalCache`, *optional*): scored images of the edited model, keyed by the edit's request,
            λ, prompt, seed and settings: a λ seen before (on the slider, in an example) costs nothing.
        problems (`OriginalCache`, *optional*): prepared problems (one factorisation serves every λ) by request.
        renderer (*optional*): the background worker, started on first use (`background.renderer_of`).
    """

    pipe: Any
    classifier: Any
    config: DemoConfig
    cache: OriginalCache
    workdir: Path
    tokenizer: Any = None
    turns: PipelineTurns = field(default_factory=PipelineTurns)
    edited_cache: OriginalCache | None = None
    problems: OriginalCache = field(default_factory=lambda: OriginalCache(64))
    renderer: Any = None  # the background `GridRenderer` (`time_core.demo.background.renderer_of`)

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = copy.deepcopy(self.pipe.tokenizer)
        if self.edited_cache is None:
            self.edited_cache = OriginalCache(self.cache.max_items)

    @classmethod
    def load(cls, config: DemoConfig, device: str | None = None) -> DemoRuntime:
        """Loads the pipeline and the scorer of `config` (raises `ModelLoadError` / `ScorerWeightsUnavailableError`)."""
        import torch

        from ..evaluation.scoring import load_scorer
        from ..models import load_pipeline, with_scheduler

        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        pipe = with_scheduler(load_pipeline(config.model, device=device, safety_checker=config.safety_checker),
                              config.scheduler)
        classifier = ClipClassifier(load_scorer(config.scorer, device=device))
        workdir = Path(tempfile.mkdtemp(prefix="time-demo-"))
        runtime = cls(pipe=pipe, classifier=classifier, config=config, cache=OriginalCache(config.cache_items),
                      workdir=workdir)
        atexit.register(runtime.close)  # also on Ctrl-C, and on SIGTERM below
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return runtime

    def save_edit(self, edit: BaseEdit) -> Path:
        """Writes `edit` for download in the work folder (`save_edit_file`), keeping the newest
        `config.max_edit_files` edit files."""
        return save_edit_file(edit, self.workdir, self.config.max_edit_files)

    def load_edit(self, path: str | Path | None) -> BaseEdit:
        """Reads an uploaded edit file (`load_edit_file`: size, format, text width) and checks it like typed input
        (`check_uploaded_edit`: the number of pairs and preserved prompts, every prompt); raises `EditFileError`."""
        edit = load_edit_file(path, self.pipe, int(self.config.max_upload_mb * 1e6))
        return check_uploaded_edit(edit, self.config, self.tokenizer, Path(path).name)

    def close(self) -> None:
        """Removes the work folder and every edit file in it (called at exit by runtimes made with `load`)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor)

    @property
    def default_size(self) -> int:
        return self.config.size or self.native_size

    @property
    def size_step(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def debias_classifier(self) -> ColourClassifier | ClipClassifier:
        """What labels debiasing images: the colour reader on the Shapes world, CLIP between the classes otherwise."""
        return ColourClassifier() if self.config.family == TOY else self.classifier

    @property
    def image_format(self) -> str:
        """How the page sends images: lossless PNG for the small toy images, WebP for Stable Diffusion's."""
        return "png" if self.config.family == TOY else "webp"

    @property
    def max_prompt_tokens(self) -> int:
        """The most tokens a prompt may have (the text encoder's window, without its start and end tokens)."""
        return int(self.tokenizer.model_max_length) - 2

    @property
    def model_label(self) -> str:
        if self.config.model == TOY:
            return "toy Shapes-world model (embedded)"
        return self.config.model

    def settings(
        self,
        num_seeds: Any = None,
        first_seed: Any = 0,
        steps: Any = None,
        guidance: Any = None,
        size: Any = None,
        max_seeds: int | None = None,
    ) -> GenerationSettings:
        """`parse_settings` with this model's default size and size step."""
        return parse_settings(self.config, num_seeds, first_seed, steps, guidance, size, size_step=self.size_step,
                              max_seeds=max_seeds, default_size=self.default_size)

    def describe(self) -> str:
        """One line of Markdown: model, device, dtype and scorer."""
        device = self.pipe.device
        name = str(device)
        if device.type == "cuda":
            import torch

            name = f"{device} ({torch.cuda.get_device_name(device)})"
        dtype = str(self.pipe.unet.dtype).replace("torch.", "")
        return (
            f"**Model:** `{self.model_label}` · **device:** {name} · **dtype:** {dtype} · "
            f"**scorer:** CLIP `{self.config.scorer}`"
        )


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (a stopped container or Space) exits like Ctrl-C does, so that the work folder is removed."""
    sys.exit(128 + signum)
