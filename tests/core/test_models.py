"""Loading pipelines and checking the architectures TIME's embedding-map form relies on."""

import copy

import pytest
import torch

import time_core
from time_core import UnsupportedModelError, compute_edit
from time_core.models import check_architecture, encode_prompts, thread_view

SOURCE, DESTINATION = "a pack of roses", "a pack of blue roses"


def test_unsupported_architectures_fail_loudly(sd1):
    from diffusers import UNet2DConditionModel

    pipe = copy.copy(sd1)
    config = {k: v for k, v in sd1.unet.config.items() if not k.startswith("_")}
    config["encoder_hid_dim"] = 32
    pipe.unet = UNet2DConditionModel.from_config(config)
    with pytest.raises(UnsupportedModelError, match="encoder_hid_proj"):
        compute_edit(pipe, SOURCE, DESTINATION)
    config = {k: v for k, v in sd1.unet.config.items() if not k.startswith("_")}
    config.update(down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                  mid_block_type=None)
    pipe.unet = UNet2DConditionModel.from_config(config)
    with pytest.raises(UnsupportedModelError, match="no cross-attention layer"):
        check_architecture(pipe)


def test_load_pipeline_from_a_local_folder(sd1, tmp_path):
    sd1.save_pretrained(tmp_path / "pipe")
    pipe = time_core.load_pipeline(str(tmp_path / "pipe"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.unet.dtype == torch.float32
    a = compute_edit(pipe, SOURCE, DESTINATION)
    assert torch.allclose(a.M, compute_edit(sd1, SOURCE, DESTINATION).M, atol=1e-10)
    assert a.model == "pipe"  # the folder's name: edit files carry no path of this machine


def test_load_pipeline_errors(tmp_path, monkeypatch):
    from time_core import models

    monkeypatch.setattr(models, "TOY_PIPELINE_DIR", tmp_path / "nothing")
    with pytest.raises(time_core.ModelLoadError, match="python -m time_core.shapes.train"):
        time_core.load_pipeline("toy")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(time_core.ModelLoadError, match="could not be downloaded.*model='toy'"):
        time_core.load_pipeline("no-such-user/no-such-model", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(time_core.ModelLoadError, match="not a diffusers pipeline"):
        time_core.load_pipeline(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ValueError, match="model must be"):
        time_core.load_pipeline("")
    for missing in (str(tmp_path / "no-such-folder"), "./models/sd14", "~/sd", "a/b/c"):
        with pytest.raises(time_core.ModelLoadError, match="no folder .*: a local model is a folder saved with"):
            time_core.load_pipeline(missing, device="cpu")


def test_edits_of_the_toy_model_record_its_name_not_its_folder():
    from time_core.models import check_model

    assert compute_edit(time_core.load_pipeline("toy"), "a circle", "a green circle").model == "toy"
    assert check_model("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"
    assert check_model("gpt2") == "gpt2"


@pytest.mark.parametrize("name", ["sd1", "sdxl"])
def test_a_thread_view_shares_the_weights_and_owns_the_tokenizers_and_scheduler(name, request):
    pipe = request.getfixturevalue(name)
    view = thread_view(pipe)
    assert type(view) is type(pipe)
    stateful = {"scheduler", "tokenizer", "tokenizer_2"} & set(pipe.components)
    assert len(stateful) == (3 if name == "sdxl" else 2)
    for component, module in pipe.components.items():
        assert (getattr(view, component) is module) == (component not in stateful), component
    ours, theirs = encode_prompts(view, ["a rose"], "blurry", True), encode_prompts(pipe, ["a rose"], "blurry", True)
    assert torch.equal(ours.embeds, theirs.embeds) and torch.equal(ours.negative, theirs.negative)
