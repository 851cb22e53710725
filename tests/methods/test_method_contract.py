"""The contract every registered editing method keeps, run over `time_core.METHODS` (as diffusers runs its test mixins
over pipelines): a method is tested by being registered.

On tiny random SD 1.x / SD 2.x / SDXL pipelines (`tests/helpers.py`) and the embedded toy model: the shared weights are
never written; the images through an edit equal those of a model whose weights were replaced by
`edit.edited_weights`; an edit file reproduces the images bit for bit; one `prepare` serves several λ; a very large λ
is the original model (for methods whose λ weighs the change of the weights); an edit of another text width is
refused; bad input is a clear error that changes nothing; the declared `features` are exactly what `prepare` accepts.
Each case of a method is one of its edits: the plain edit, and one per declared feature (values only, automatic
preservation, the knob-free edit `lam="auto", preserve="auto"`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import check_like_replaced, pipeline_hash

from time_core import METHODS, EditFileError, PromptError, compute_edit, generate, load_edit
from time_core.edit import REQUEST_FIELDS

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"
TOY_SOURCE, TOY_DESTINATION = "a circle", "a green circle"
KWARGS = dict(num_inference_steps=3, output_type="np", progress=False)
PROMPTS, SEEDS = ["a pack of roses", "a car"], [0, 1]
# constructor options that keep a slow method fast here (the fine-tuning baseline trains 4000 iterations by default)
FAST = {"finetune": dict(iterations=20)}
# the options of `prepare` a method may declare (`EditingMethod.features`), and the edit each asks for
FEATURES = {
    "values_only": dict(edit_keys=False),
    "auto_preserve": dict(preserve="auto"),
    "auto_lam": dict(preserve="auto", lam="auto"),
}
NAMES = sorted(METHODS)
CASES = [(name, feature) for name in NAMES for feature in (None, *sorted(METHODS[name].features))]
_EDITS: dict = {}


def method_for(name: str):
    """The registered method, or a fast instance of its class."""
    method = METHODS[name]
    return type(method)(**FAST[name]) if name in FAST else method


def make_edit(name: str, feature: str | None, pipe, source=SOURCE, destination=DESTINATION, **options):
    """The edit of one case on `pipe` (cached per pipeline: the fine-tuning baseline trains once per case)."""
    key = (name, feature, id(pipe), str(source), str(destination), str(sorted(options.items())))
    if key not in _EDITS:
        arguments = {**FEATURES.get(feature, {}), **options}
        lam = arguments.pop("lam", None)
        _EDITS[key] = method_for(name).prepare(pipe, source, destination, **arguments).solve(lam)
    return _EDITS[key]


def hooks(pipe) -> int:
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for module in modules for m in module.modules())


@pytest.fixture(scope="module")
def toy():
    from time_core import load_pipeline

    return load_pipeline("toy")


@pytest.mark.parametrize("name", NAMES)
def test_the_method_is_registered_under_its_name_with_its_default_lam(sd1, name):
    method = METHODS[name]
    assert method.name == name == method.edit_class.method and method.label and method.edits and method.summary
    assert set(method.features) <= set(FEATURES), "a feature the contract does not know: add it to FEATURES"
    problem = method_for(name).prepare(sd1, SOURCE, DESTINATION, augment=False)
    edit = problem.solve()
    assert isinstance(edit, method.edit_class) and edit.method == name and edit.lam == method.default_lam
    component = getattr(sd1, edit.component)
    assert set(edit.edited_weights(component)) <= set(dict(component.named_parameters()))
    assert problem.sources == (SOURCE,) and problem.destinations == (DESTINATION,)


@pytest.mark.parametrize("name,feature", CASES)
def test_the_shared_weights_are_never_written(sd1, name, feature):
    encode = generate(sd1, ["a rose"], [0], num_inference_steps=1, progress=False)  # transformers hooks on first use
    assert encode.original
    before, before_hooks = pipeline_hash(sd1), hooks(sd1)
    edit = make_edit(name, feature, sd1)
    for component in getattr(edit, "components", None) or (edit.component,):
        edit.edited_weights(getattr(sd1, component))
    generate(sd1, ["a rose"], [0], edit=edit, negative_prompt="blurry", **KWARGS)

    def explode(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        generate(sd1, ["a rose"], [0], edit=edit, progress=False, num_inference_steps=3, callback=explode)
    assert pipeline_hash(sd1) == before and hooks(sd1) == before_hooks


@pytest.mark.parametrize("name,feature", CASES)
def test_images_equal_the_weight_replaced_model(sd1, name, feature):
    # automatic preservation keeps what is not the source (here "a car") as it is, and on this random model's
    # embeddings moves the source less: its images change by more than twice the tolerance of the equality
    auto = feature in ("auto_preserve", "auto_lam")
    check_like_replaced(sd1, make_edit(name, feature, sd1), "blurry", PROMPTS, changed=1 if auto else None,
                        change=2e-4 if auto else 1e-3)


@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
@pytest.mark.parametrize("name", NAMES)
def test_sdxl_images_equal_the_weight_replaced_model(sdxl, name, negative_prompt):
    """On SDXL the prompts, the negative / unconditional prompt and the pooled embeddings go through the edit."""
    check_like_replaced(sdxl, make_edit(name, None, sdxl), negative_prompt, PROMPTS)


@pytest.mark.parametrize("name", NAMES)
def test_images_on_the_toy_model_equal_the_weight_replaced_model(toy, name):
    check_like_replaced(toy, make_edit(name, None, toy, TOY_SOURCE, TOY_DESTINATION), "blurry",
                        prompts=["a circle", "a big circle"], atol=1e-4)


def check_round_trip(pipe, edit, path, prompts=PROMPTS):
    """`save` → `load_edit` gives the same tensors, dtypes, λ and request, and the same images bit for bit."""
    loaded = load_edit(edit.save(path))
    assert type(loaded) is type(edit) and loaded.metadata() == edit.metadata() and loaded.lam == edit.lam
    assert loaded.request == edit.request and all(getattr(loaded, f) == getattr(edit, f) for f in REQUEST_FIELDS)
    assert type(edit).load(path).metadata() == edit.metadata()
    for other in {method.edit_class for method in METHODS.values()} - {type(edit)}:  # another method's class refuses it
        with pytest.raises(EditFileError, match=f"holds a '{edit.method}' edit, not a '{other.method}' one"):
            other.load(path)
    ours, theirs = edit.tensors(), loaded.tensors()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)
    first = generate(pipe, prompts, SEEDS, edit=edit, negative_prompt="blurry", original=False, **KWARGS)
    again = generate(pipe, prompts, SEEDS, edit=loaded, negative_prompt="blurry", original=False, **KWARGS)
    assert all(np.array_equal(a, b) for row, other in zip(first.edited, again.edited) for a, b in zip(row, other))


@pytest.mark.parametrize("name,feature", CASES)
def test_save_then_load_reproduces_the_images_bit_for_bit(sd1, tmp_path, name, feature):
    edit = make_edit(name, feature, sd1, [SOURCE, "an apple"], [DESTINATION, "a red apple"])
    check_round_trip(sd1, edit, tmp_path / "edit.safetensors")


@pytest.mark.parametrize("name", NAMES)
def test_files_round_trip_on_sdxl_and_the_toy_model_with_listed_preservation(sdxl, toy, tmp_path, name):
    options = dict(preserve=("a car",), preserve_weight=2.0)
    check_round_trip(sdxl, make_edit(name, None, sdxl, **options), tmp_path / "xl.safetensors")
    edit = make_edit(name, None, toy, TOY_SOURCE, TOY_DESTINATION, preserve=("a big square",), preserve_weight=2.0)
    assert edit.preserve == ("a big square",) and edit.preserve_weight == 2.0
    check_round_trip(toy, edit, tmp_path / "toy.safetensors", prompts=["a circle", "a big square"])


@pytest.mark.parametrize("name", NAMES)
def test_one_prepare_serves_several_lams(sd1, name):
    method = method_for(name)
    problem = method.prepare(sd1, SOURCE, DESTINATION)
    lams = (1e-3, 0.01, 1.0, 100.0) if METHODS[name].lam_weighs_change else (1e-3, 1.0)
    edits = [problem.solve(lam) for lam in lams]
    for lam, edit in zip(lams, edits):
        assert edit.lam == lam
        direct = method.prepare(sd1, SOURCE, DESTINATION).solve(lam)
        for key, tensor in edit.tensors().items():
            assert torch.allclose(tensor, direct.tensors()[key], atol=1e-10), (lam, key)
    first, last = edits[0].tensors(), edits[-1].tensors()
    assert any(not torch.equal(first[k], last[k]) for k in first)
    if METHODS[name].lam_weighs_change:  # a larger λ is a smaller change of the weights
        changes = [sum(float((w.double() - p.double()).norm()) for w, p in weight_changes(sd1, edit)) for edit in edits]
        assert changes == sorted(changes, reverse=True)


def weight_changes(pipe, edit):
    """`(W', W)` for every weight the edit changes."""
    for component in getattr(edit, "components", None) or (edit.component,):
        module = getattr(pipe, component)
        params = dict(module.named_parameters())
        yield from ((weight, params[key].detach()) for key, weight in edit.edited_weights(module).items())


@pytest.mark.parametrize("name", [name for name in NAMES if METHODS[name].lam_weighs_change])
def test_a_very_large_lam_is_the_original_model(sd1, name):
    edit = method_for(name).prepare(sd1, SOURCE, DESTINATION).solve(1e12)
    pairs = list(weight_changes(sd1, edit))
    assert pairs and all(torch.allclose(w, p, rtol=0, atol=1e-6 * float(p.abs().max())) for w, p in pairs)
    result = generate(sd1, PROMPTS, SEEDS, edit=edit, negative_prompt="blurry", **KWARGS)
    for original, edited in zip(result.original, result.edited):
        assert all(np.abs(a - b).max() < 1e-5 for a, b in zip(original, edited))


def test_the_contract_covers_a_method_whose_lam_is_not_a_change_penalty():
    """The fine-tuning baseline's λ is Adam's weight decay, which pulls θ towards 0, not towards the original."""
    assert not METHODS["finetune"].lam_weighs_change and METHODS["time"].lam_weighs_change


@pytest.mark.parametrize("name", NAMES)
def test_an_edit_of_another_text_width_is_refused(sd1, sd2, tmp_path, name):
    edit = make_edit(name, None, sd1)
    loaded = load_edit(edit.save(tmp_path / "sd1.safetensors"))
    before = pipeline_hash(sd2)
    for candidate in (edit, loaded):
        with pytest.raises(EditFileError):
            candidate.check_compatible(sd2)
        with pytest.raises(EditFileError):
            generate(sd2, ["a rose"], [0], edit=candidate, **KWARGS)
        with pytest.raises(EditFileError):
            candidate.edited_weights(getattr(sd2, candidate.component))
    assert pipeline_hash(sd2) == before


BAD_INPUT = [
    (dict(source=""), PromptError, "source is empty"),
    (dict(destination="   "), PromptError, "destination is empty"),
    (dict(source=["a rose", "a car"]), ValueError, "2 source prompts but 1"),
    (dict(source=[], destination=[]), ValueError, "source is an empty list"),
    (dict(source="a " + "very " * 80 + "big rose"), PromptError, "at most 77"),
    (dict(destination="a " + "very " * 80 + "rose"), PromptError, "at most 77"),
    (dict(lam=0), ValueError, "lam must be finite and > 0"),
    (dict(lam=-1), ValueError, "lam must be finite and > 0"),
    (dict(lam=float("nan")), ValueError, "lam must be finite and > 0"),
    (dict(lam=float("inf")), ValueError, "lam must be finite and > 0"),
    (dict(lam="large"), ValueError, "lam must be a number, got 'large'"),
    (dict(preserve_weight=-1), ValueError, "preserve_weight must be finite and >= 0"),
    (dict(preserve_weight=float("nan")), ValueError, "preserve_weight must be finite and >= 0"),
    (dict(preserve=[""]), PromptError, "preserve prompt is empty"),
    (dict(preserve=[3]), PromptError, "preserve prompt must be a string"),
    (dict(method="uce"), ValueError, r"unknown editing method 'uce'; registered methods: \["),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_INPUT)
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error_and_changes_nothing(sd1, name, kwargs, error, message):
    arguments = dict(source=SOURCE, destination=DESTINATION, method=name) | kwargs
    before = pipeline_hash(sd1)
    with pytest.raises(error, match=message):
        compute_edit(sd1, **arguments)
    if "lam" in kwargs:
        with pytest.raises(error, match=message):
            method_for(name).prepare(sd1, SOURCE, DESTINATION, augment=False).solve(kwargs["lam"])
    assert pipeline_hash(sd1) == before


def feature_argument(feature: str) -> str:
    return {"values_only": r"edit_keys=False \(values only\)", "auto_preserve": "preserve='auto'",
            "auto_lam": "lam='auto'"}[feature]


@pytest.mark.parametrize("feature", sorted(FEATURES))
@pytest.mark.parametrize("name", NAMES)
def test_the_declared_features_are_what_prepare_accepts(sd1, name, feature):
    method = METHODS[name]
    flags = dict(values_only=feature == "values_only", auto_preserve=feature in ("auto_preserve", "auto_lam"),
                 auto_lam=feature == "auto_lam")
    before = pipeline_hash(sd1)
    if feature not in method.features:
        assert method.unsupported(**flags)
        with pytest.raises(ValueError, match=f"^{feature_argument(feature)} is not available for {name}; "):
            compute_edit(sd1, SOURCE, DESTINATION, method=name, **FEATURES[feature])
        assert pipeline_hash(sd1) == before
        return
    assert method.unsupported(**flags) == []
    edit, plain = make_edit(name, feature, sd1), make_edit(name, None, sd1)
    if feature == "values_only":
        component = getattr(sd1, edit.component)
        assert set(edit.edited_weights(component)) < set(plain.edited_weights(component))
    else:
        assert edit.auto_preserve and edit.preserve and "auto" not in edit.preserve and not plain.auto_preserve
        assert edit.lam_auto == (feature == "auto_lam") and math.isfinite(edit.lam) and edit.lam > 0
        assert compute_edit(sd1, SOURCE, DESTINATION, method=name, **FEATURES[feature]).metadata() == edit.metadata()
    assert pipeline_hash(sd1) == before
