"""Bulk editing (App. F): repeated sources removed, one multi-edit for every entry, equal to a hand-built multi-edit,
resumable, and its `--limit` part of the results folder's configuration."""

import json
from argparse import Namespace

import numpy as np
import pytest
import torch
from helpers import BrightnessScorer, pipeline_hash

from time_core import compute_edit, generate
from time_core.evaluation.bulk import BulkProblem, bulk_entries, conflicting_negatives
from time_core.evaluation.classifiers import ClipClassifier
from time_core.evaluation.experiments import ExperimentConfig, LocalState, run
from time_core.methods import get_method
from time_core.presets import EditEntry, load_preset

ARGS = Namespace(ablation=False, quality=0, oracle_filter=None)


class CountingClassifier(ClipClassifier):
    def __init__(self):
        super().__init__(BrightnessScorer())
        self.calls = 0

    def prob_destination(self, images, prompts, destinations):
        self.calls += 1
        return super().prob_destination(images, prompts, destinations)


def _write(report, out, start):
    (out / "results.json").write_text(json.dumps(report))


def _config(**kwargs):
    base = dict(preset="shapes", model="tiny", classifier="brightness", seeds=(0, 1), lams=(0.1, 1000.0), steps=2,
                guidance=3.0, limit=4, bulk=True)
    return ExperimentConfig(**{**base, **kwargs})


def test_repeated_sources_are_removed_keeping_the_first():
    def entry(source):
        return EditEntry(source, source.replace("a ", "a red ", 1), (), ())

    entries = [entry("a rose"), entry("A  Rose"), entry("a car"), entry("a rose ")]
    assert bulk_entries(entries) == ([0, 2], [1, 3])
    shapes = load_preset("shapes").entries
    kept, removed = bulk_entries(shapes)
    assert [shapes[i].source for i in kept] == ["a circle", "a oval", "a square", "a rectangle", "a triangle",
                                                "a star", "a heart"]
    assert len(kept) + len(removed) == len(shapes)


def test_bulk_equals_a_hand_built_multi_edit(sd1, tmp_path):
    before = pipeline_hash(sd1)
    classifier = CountingClassifier()
    report = run(ARGS, _config(), tmp_path, LocalState(), _write, pipe=sd1, classifier=classifier)
    bulk = report["bulk"]
    assert bulk["entries"] == 2 and bulk["removed"] == ["a circle -> a blue circle", "a circle -> a yellow circle"]
    # "a circle" -> "a green circle" and "a oval" -> "a green oval" edited at once: each entry's look-alike negatives
    # ("a oval" must not become "a green oval", ...) are what the other entry asks for, and are left out here
    conflicts = conflicting_negatives([load_preset("shapes").entries[i] for i in (0, 3)])
    assert bulk["conflicting_negatives"] == len(conflicts) == 6 and {k for _, k in conflicts} == {0, 1, 2}
    units = [json.loads((tmp_path / "units" / f"e{e:04d}_s0-1_lam1000.0.json").read_text())["time"] for e in (0, 1)]
    kept = np.array([row for e, rows in enumerate(units) for k, row in enumerate(rows[11:]) if (e, k) not in conflicts])
    expected = (kept <= 0.5).mean(axis=0)  # (seeds,): the share of kept negatives per seed
    assert bulk["specificity_without_conflicts"]["time@1000.0"]["mean"] == pytest.approx(expected.mean())
    assert [row["source"] for row in report["per_entry"]] == ["a circle", "a oval"]
    assert report["config"]["preset"] == "shapes" and report["config"]["bulk"] is True

    preset = load_preset("shapes")
    kept = [preset.entries[0], preset.entries[3]]
    sources, destinations = [e.source for e in kept], [e.destination for e in kept]
    shared = BulkProblem(kept, get_method("time"))
    problem = shared(sd1, kept[0])
    assert shared(sd1, kept[1]) is problem  # prepared once, given to every entry
    by_hand = compute_edit(sd1, sources, destinations, lam=1000.0)
    assert torch.allclose(problem.solve(1000.0).M, by_hand.M, atol=1e-12)
    for index, entry in enumerate(kept):  # every entry measured under the one edit
        prompts, targets = entry.prompts()
        images = generate(sd1, prompts, [0, 1], edit=by_hand, original=False, num_inference_steps=2,
                          guidance_scale=3.0, progress=False).edited  # [prompt][seed]
        expected = [[float(classifier.prob_destination([image], p, d)[0]) for image in row]
                    for row, p, d in zip(images, prompts, targets)]
        unit = json.loads((tmp_path / "units" / f"e{index:04d}_s0-1_lam1000.0.json").read_text())
        assert np.allclose(unit["time"], expected, atol=1e-6)
    assert pipeline_hash(sd1) == before

    idle = CountingClassifier()  # a finished run does no work again
    again = run(ARGS, _config(), tmp_path, LocalState(), _write, pipe=sd1, classifier=idle)
    assert idle.calls == 0 and again["overall"] == report["overall"]
    with pytest.raises(ValueError, match=r"differs in \['limit'\]"):  # another --limit is another edit
        run(ARGS, _config(limit=5), tmp_path, LocalState(), _write, pipe=sd1, classifier=idle)
