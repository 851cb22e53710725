"""The demo's configuration, input checks, test-prompt table and preset dropdowns."""

from __future__ import annotations

import pytest

import time_core.demo as demo
from time_core.presets import PromptPair


def test_config_defaults_per_model():
    toy = demo.DemoConfig.for_model("toy")
    assert (toy.family, toy.size, toy.guidance, toy.num_seeds, toy.scorer) == ("toy", 64, 5.0, 4, "toy")
    assert 10 <= toy.steps <= 20
    sd = demo.DemoConfig.for_model(demo.DEFAULT_SD_MODEL)
    assert (sd.family, sd.size, sd.steps, sd.guidance, sd.num_seeds, sd.scorer) == ("sd", None, 20, 7.5, 1, "ViT-B-32")
    assert (sd.scheduler, sd.batch_size, toy.scheduler, toy.batch_size) == ("dpm", 12, "default", None)
    with pytest.raises(ValueError, match="unknown scheduler"):
        demo.DemoConfig.for_model("toy", scheduler="plms")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        demo.DemoConfig.for_model("toy", batch_size=0)
    assert demo.DemoConfig.for_model("toy", max_seeds=32, steps=None).max_seeds == 32
    assert demo.resolve_model("some/model", {"TIME_MODEL": "toy"}) == "some/model"
    assert demo.resolve_model(None, {"TIME_MODEL": "toy"}) == "toy"
    with pytest.raises(ValueError, match="family"):
        demo.DemoConfig.for_model("toy", family="sdxl")


def test_input_parsing_messages():
    config = demo.DemoConfig.for_model("toy")
    settings = demo.parse_settings(config, 3, 5, 10, 4.5, 64, size_step=4)
    assert settings == demo.GenerationSettings(seeds=(5, 6, 7), steps=10, guidance=4.5, size=64)
    assert demo.parse_settings(config).seeds == (0, 1, 2, 3)
    cases = [
        (dict(num_seeds=40), "number of seeds is 40, more than the limit of 16"),
        (dict(num_seeds="four"), "number of seeds must be a number, got 'four'"),
        (dict(num_seeds=2.5), "number of seeds must be a whole number"),
        (dict(steps=0), "steps must be at least 1"),
        (dict(steps=1000), "steps is 1000, more than the limit of 100"),
        (dict(size=66), "multiple of 4"),
        (dict(size=4096), "image size is 4096, more than the limit of 128"),
        (dict(guidance="nan"), "guidance scale must be a finite number"),
    ]
    for kwargs, message in cases:
        with pytest.raises(demo.DemoInputError, match=message):
            demo.parse_settings(config, size_step=4, **kwargs)
    assert demo.parse_lam(" 1e-2 ") == 0.01
    for bad, message in [("abc", "λ must be a number > 0, got 'abc'"), ("", "λ is empty"), ("-1", "finite number > 0"),
                         ("inf", "finite number > 0")]:
        with pytest.raises(demo.DemoInputError, match=message):
            demo.parse_lam(bad)
    assert demo.lam_from_log(-1) == "0.1" and demo.log_from_lam("1e9") == demo.LOG_LAM_MAX
    assert demo.log_from_lam("100") == pytest.approx(2.0)


def test_test_prompt_table():
    rows = [["positive", "a big circle", "a big green circle"], ["negative", "a square", "a green square"],
            ["", "", ""], [None, None, None]]
    positives, negatives = demo.parse_test_prompts(rows)
    assert positives == (PromptPair("a big circle", "a big green circle"),)
    assert negatives == (PromptPair("a square", "a green square"),)
    assert demo.parse_test_prompts({"headers": [], "data": rows}) == (positives, negatives)
    with pytest.raises(demo.DemoInputError, match="row 1: 'a square' has no destination"):
        demo.parse_test_prompts([["negative", "a square", ""]])
    with pytest.raises(demo.DemoInputError, match="row 1: role must be 'positive' or 'negative'"):
        demo.parse_test_prompts([["sideways", "a square", "a green square"]])


def test_presets_in_the_dropdown():
    sd = demo.preset_choices("sd")
    assert len(sd) == 147 + 104 + 8 + 35
    assert sd[0][0].startswith("TIMED test · ") and " → " in sd[0][0]
    assert len({key for _, key in sd}) == len(sd)
    toy = demo.preset_choices("toy")
    assert len(toy) == 21 + 15 + 1 and all(label.startswith("Shapes") for label, _ in toy)
    assert toy[0] == ("Shapes (hard) · a circle → a green circle", "shapes:0")  # the hard benchmark comes first
    assert demo.preset_choices("toy", kind="debias") == [toy[-1]]
    circle = demo.preset_prompts("shapes:0")
    assert (circle.source, circle.destination) == ("a circle", "a green circle")
    assert len(circle.positives) == len(circle.negatives) == 10 and len(circle.table()) == 20  # the hard preset
    diamond = demo.preset_prompts("shapes_debias:0")  # debias tests become positives with the edit applied
    assert [p.destination for p in diamond.positives][:2] == ["a big blue diamond", "a drawing of a blue diamond"]
    attendant = demo.preset_prompts("timed_professions:0")
    assert attendant.positives[0] == PromptPair("A painting of an attendant", "A painting of a female attendant")
    with pytest.raises(demo.DemoInputError, match="unknown preset"):
        demo.preset_prompts("nope:3")


def test_test_table_carries_prompt_types():
    positives, negatives = demo.parse_test_prompts([
        ["positive", "two circles", "two green circles", "plural"],
        ["negative", "a blue circle", "a green circle"],  # a three-column row: no type
    ])
    assert positives[0].type == "plural" and negatives[0].type is None
    table = demo.preset_prompts("shapes:0").table()
    assert [row[3] for row in table] == ["phrasing"] * 3 + ["plural"] * 3 + ["scene-first"] * 2 + ["scene-second"] * 2 + [
        "related"] * 3 + ["explicit"] * 5 + ["other-object", "unrelated"]
    assert demo.PromptSet.from_fields("a circle", "a green circle", table).table() == table  # a round trip


def test_the_scheduler_and_the_batch_size_reach_the_pipeline(tiny_runtime, monkeypatch):
    import dataclasses

    from diffusers import DPMSolverMultistepScheduler

    runtime = dataclasses.replace(tiny_runtime, config=dataclasses.replace(tiny_runtime.config, batch_size=3),
                                  cache=demo.OriginalCache(16))
    calls = []
    pipe_call = type(runtime.pipe).__call__
    monkeypatch.setattr(type(runtime.pipe), "__call__", lambda self, **kw: calls.append(len(kw["latents"]))
                        or pipe_call(self, **kw))
    settings = demo.GenerationSettings(seeds=(0, 1), steps=1, guidance=1.0, size=16)
    demo.original_images(runtime, ["a rose", "a car", "a dog"], settings)
    assert calls == [3, 3]  # 6 images in calls of 3
    loaded = demo.DemoRuntime.load(demo.DemoConfig.for_model("toy", scheduler="dpm"), device="cpu")
    assert isinstance(loaded.pipe.scheduler, DPMSolverMultistepScheduler)
