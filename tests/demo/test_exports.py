"""Edits that travel from the page: a LoRA of the session's edit, and what the upload says about foreign files."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

import time_core.demo as demo
from time_core import EditFileError
from time_core.export import read_lora_report


@pytest.mark.parametrize("lora_format", ["peft", "kohya"])
def test_the_session_edit_as_a_lora_and_its_upload_refused_with_a_message(tiny_runtime, lora_format):
    pipe = tiny_runtime.pipe
    edit = demo.SessionEdits().build(pipe, "a rose", "a blue rose", 0.12345)
    path, report = demo.export_session_lora(tiny_runtime, edit, lora_format)
    meta = read_lora_report(path)
    assert meta["format"] == lora_format and meta["max_error"] < 1e-5
    assert path.name == f"time-lam0.12345-lora-{lora_format}.safetensors"
    assert f"{len(meta['ranks'])} layers" in report and "largest relative error" in report
    with pytest.raises(EditFileError, match="is a LoRA exported from a .* TIME edit, not an edit file: load it in "
                                            "diffusers"):
        demo.load_edit_file(path, pipe, max_bytes=1)  # named as a LoRA before its size is checked
    with pytest.raises(demo.DemoInputError, match="no edit to export yet"):
        demo.export_session_lora(tiny_runtime, None, lora_format)
    with pytest.raises(demo.DemoInputError, match="LoRA format must be one of"):
        demo.export_session_lora(tiny_runtime, edit, "ckpt")


def test_foreign_files_dropped_on_the_upload_are_named(tiny_runtime, tmp_path):
    pipe = tiny_runtime.pipe
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attn1_to_q.lora_down.weight": torch.zeros(4, 8)}, str(lora))
    weights = tmp_path / "model.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2), "conv.bias": torch.zeros(2)}, str(weights))
    cases = [(lora, "style.safetensors is a LoRA (1 tensor), not an edit file: this page applies TIME"),
             (weights, "model.safetensors is a safetensors file of 2 tensors without edit metadata")]
    for path, message in cases:
        with pytest.raises(EditFileError, match=re.escape(message)):
            demo.load_edit_file(path, pipe, max_bytes=10**6)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"{not safetensors")
    with pytest.raises(EditFileError, match="not a readable safetensors file"):
        demo.load_edit_file(corrupt, pipe, max_bytes=10**6)
    edit = demo.SessionEdits().build(pipe, "a rose", "a blue rose", 0.1)
    assert demo.foreign_file_message(demo.save_edit_file(edit, tmp_path)) is None
