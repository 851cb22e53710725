"""The Edit tab's comparison grid: one row per prompt with its role and text, the original and the edited image side
by side for every seed, and the scorer's verdict on the row. Plain HTML (the page shows it as it is); images are
referenced by URL, which the caller provides (the UI serves them as files).
"""

from __future__ import annotations

import html
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .images import ScoredImage
from .inputs import lam_text

__all__ = ["ImageFiles", "comparison_html", "row_verdict"]

ROLE_TITLES = {"source": "source", "positive": "positive · should change", "negative": "negative · should not change"}


def row_verdict(role: str, edited: Sequence[ScoredImage | None]) -> tuple[str, str]:
    """The scorer's verdict on one row of edited images (a hit: P(destination) > 0.5, as the metrics count it):
    `("followed" | "not followed", ...)` for the source and positives, `("kept" | "leaked", ...)` for negatives, with
    the count of hits; `("pending", "")` while images are missing."""
    if not edited or any(image is None for image in edited):
        return "pending", ""
    hits = sum(image.p_destination > 0.5 for image in edited)
    count = f"{hits}/{len(edited)} show the destination"
    if role == "negative":
        return ("leaked" if 2 * hits >= len(edited) else "kept"), count
    return ("followed" if 2 * hits >= len(edited) else "not followed"), count


def _image(url: str, image: ScoredImage, model: str) -> str:
    title = f"{model} · seed {image.seed} · P(destination) = {image.p_destination:.2f}"
    return (f'<figure class="cmp-cell {model.split()[0]}"><img src="{html.escape(url)}" alt="{html.escape(title)}" '
            f'title="{html.escape(title)}" loading="lazy">'
            f'<figcaption>P={image.p_destination:.2f}</figcaption></figure>')


def _pending(lam: float) -> str:
    return f'<figure class="cmp-cell edited pending"><div>λ = {lam_text(lam)}<br>rendering…</div></figure>'


def comparison_html(update: Any, url: Callable[[Any], str], caption: str = "") -> str:
    """The comparison grid of an `EditUpdate` (stage `"original"`, `"preview"` or `"edited"`): one row per prompt in a
    scrolling box (a CSS grid of `2 + 2 × seeds` columns, set by `--seeds`); `url(image)` gives an image's address."""
    seeds = update.num_seeds
    lam = update.edit.lam
    head = "".join(f'<div class="cmp-seed"><b>seed {image.seed}</b><span>original model</span><span>edited model</span>'
                   '</div>' for image in update.original[:seeds])
    rows = [f'<div class="cmp-row cmp-head"><div class="cmp-prompt">prompt</div><div class="cmp-verdict">verdict'
            f'</div>{head}</div>']
    for start in range(0, len(update.original), seeds):
        originals = update.original[start:start + seeds]
        edited = update.edited[start:start + seeds] if update.edited else [None] * seeds
        role, prompt, destination = originals[0].role, originals[0].prompt, originals[0].destination
        verdict, detail = row_verdict(role, edited)
        cells = "".join(_image(url(o.image), o, "original model")
                        + (_image(url(e.image), e, "edited model") if e is not None else _pending(lam))
                        for o, e in zip(originals, edited))
        rows.append(
            f'<div class="cmp-row role-{role}"><div class="cmp-prompt"><span class="cmp-role">{ROLE_TITLES[role]}'
            f'</span><span class="cmp-text">{html.escape(prompt)}</span><span class="cmp-dest">scored against '
            f'“{html.escape(destination)}”</span></div><div class="cmp-verdict verdict-{verdict.replace(" ", "-")}">'
            f'<b>{verdict}</b><small>{detail}</small></div>{cells}</div>'
        )
    note = f'<p class="cmp-caption">{html.escape(caption)}</p>' if caption else ""
    return (f'<div class="comparison" data-lam="{lam_text(lam)}" data-stage="{update.stage}" '
            f'style="--seeds: {seeds}">{note}<div class="cmp-scroll">{"".join(rows)}</div></div>')


class ImageFiles:
    """Images written once as files for the page to load (`ImageFiles.path(image)`), the most recent `max_items` kept.

    Args:
        directory (`str` or `Path`): where the files go (a folder the app serves).
        image_format (`str`, *optional*, defaults to `"png"`): `"png"` or `"webp"`.
        max_items (`int`, *optional*, defaults to 4096): files kept; the least recently shown are deleted.
    """

    def __init__(self, directory: str | Path, image_format: str = "png", max_items: int = 4096) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.image_format, self.max_items = image_format, max_items
        self._paths: OrderedDict[int, tuple[Any, Path]] = OrderedDict()  # id(image) -> (image, path)
        self._lock = threading.Lock()

    def path(self, image: Any) -> Path:
        with self._lock:
            if id(image) in self._paths:
                self._paths.move_to_end(id(image))
                return self._paths[id(image)][1]
        path = self.directory / f"{uuid.uuid4().hex}.{self.image_format}"
        image.save(path, format=self.image_format.upper(), **({"quality": 90} if self.image_format == "webp" else {}))
        with self._lock:
            self._paths[id(image)] = (image, path)
            while len(self._paths) > self.max_items:
                _, (_, old) = self._paths.popitem(last=False)
                old.unlink(missing_ok=True)
        return path
