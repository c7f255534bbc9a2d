"""The one device setting: ``RunConfig.device`` resolved by ``sae_paper.data.device``, and nowhere else.

A module that picks a device itself (``torch.cuda.is_available()``, a ``"cuda"`` literal,
``torch.device(...)``) would make a GPU box and a laptop disagree about where something
runs; the AST check below names any such line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import sae_paper
from sae_paper.core.config import TRAIN_FIELDS, RunConfig, load_config
from sae_paper.data.device import check_device, harvest_dtype, resolve_device, to_device
from sae_paper.errors import SaePaperError

PACKAGE_DIR = Path(sae_paper.__file__).parent
DEVICE_MODULE = PACKAGE_DIR / "data" / "device.py"


def device_picks(path: Path, root: Path = PACKAGE_DIR) -> list[str]:
    """``file:line: what`` for every place in ``path`` that picks a device itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        what = None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch" \
                and node.attr in ("cuda", "mps"):
            what = f"torch.{node.attr}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "device" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            what = "torch.device(...)"  # the type in annotations is fine; making one is a pick
        elif isinstance(node, ast.Attribute) and node.attr == "mps":
            what = "….mps"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (node.value in ("cuda", "mps") or node.value.startswith("cuda:")):
            what = repr(node.value)
        if what:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {what}")
    return found


def test_no_module_outside_the_device_setting_picks_a_device():
    modules = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p != DEVICE_MODULE)
    assert len(modules) > 50
    picks = [pick for path in modules for pick in device_picks(path)]
    assert not picks, "pick the device through sae_paper.data.device (RunConfig.device):\n" + "\n".join(picks)


def test_the_check_finds_a_device_pick(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('import torch\nx = torch.cuda.is_available()\ny = "cuda:1"\nz = torch.device("cpu")\n'
                       'def f(d: torch.device) -> str:\n    return "cpu"\n')
    assert sorted(device_picks(planted, tmp_path)) == ["planted.py:2: torch.cuda", "planted.py:3: 'cuda:1'",
                                                       "planted.py:4: torch.device(...)"]
    assert device_picks(DEVICE_MODULE)  # the one module that does pick one


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_accepted_settings(name):
    assert check_device(name) == name
    assert RunConfig(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "", "cpu:0", 0])
def test_bad_settings_are_one_line_errors(name):
    with pytest.raises(SaePaperError, match=r"^config field device=.*: must be auto, cpu, cuda or cuda:N$"):
        RunConfig(device=name)
    with pytest.raises(SaePaperError, match="must be auto, cpu, cuda or cuda:N"):
        load_config(None, device=name) if name else check_device(name)


def test_resolution_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(SaePaperError, match="sees no CUDA GPU here; use device=auto or cpu"):
            resolve_device("cuda:0")


def test_to_device_on_the_cpu_keeps_the_tensor():
    batch = torch.arange(6.0).reshape(2, 3)
    assert to_device(batch, torch.device("cpu")) is batch


def test_the_device_enters_no_key_and_no_record():
    """The CPU book's cache entries and records stay byte-identical whatever the device setting."""
    cpu, auto = RunConfig(device="cpu"), RunConfig()
    assert "device" not in TRAIN_FIELDS
    assert cpu.key(*TRAIN_FIELDS) == auto.key(*TRAIN_FIELDS)
    assert cpu.to_dict() == auto.to_dict() and "device" not in auto.to_dict()
    assert RunConfig(**cpu.to_dict()) == auto


def test_a_harvest_runs_the_model_in_the_stored_dtype_on_a_gpu_and_in_float32_on_the_cpu():
    assert harvest_dtype(torch.device("cuda", 0), "float16") == "float16"
    assert harvest_dtype(torch.device("cuda", 0), "float32") == "float32"
    assert harvest_dtype("cpu", "float16") is None  # the CPU book's cache was computed in float32, then stored


def test_load_model_runs_in_the_dtype_it_is_given(scratch_cache):
    """What a GPU harvest does (float16 weights and activations), checked on the CPU with the random Pythia."""
    from sae_paper.data.models import load_model

    half = load_model("pythia-70m-deduped-random", "cpu", dtype="float16")
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    tokens = torch.tensor([[0, 100, 200, 300]])
    _, cache = half.run_with_cache(tokens, names_filter=lambda name: name == "blocks.1.hook_resid_post",
                                   stop_at_layer=2)
    resid = cache["blocks.1.hook_resid_post"]
    assert resid.dtype == torch.float16 and bool(torch.isfinite(resid).all())
    full = load_model("pythia-70m-deduped-random", "cpu")
    assert {p.dtype for p in full.parameters()} == {torch.float32}
    _, reference = full.run_with_cache(tokens, names_filter=lambda name: name == "blocks.1.hook_resid_post",
                                       stop_at_layer=2)
    torch.testing.assert_close(resid.float(), reference["blocks.1.hook_resid_post"], rtol=0.05, atol=0.05)
