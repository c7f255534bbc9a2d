"""The run configuration and the command line's handling of bad input."""

from __future__ import annotations

import re

import pytest

from sae_paper.cli import main
from sae_paper.core.config import HARVEST_FIELDS, RunConfig, field_docs, load_config
from sae_paper.errors import SaePaperError


def test_yaml_config_with_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: pythia-70m-deduped-random\nlayer: 2\nalpha: 0.001\n")
    config = load_config(path, layer=4)
    assert (config.model, config.layer, config.alpha) == ("pythia-70m-deduped-random", 4, 0.001)


@pytest.mark.parametrize("changes,message", [
    ({"site": "attn"}, "site='attn': must be one of resid_post, mlp_post"),
    ({"n_tokens": 0}, "n_tokens=0: must be a positive integer"),
    ({"ratio": -1.0}, "ratio=-1.0: must be positive"),
    ({"alpha": -0.1}, "alpha=-0.1: must be non-negative"),
    ({"context_length": 1}, "context_length=1"),
])
def test_bad_values_give_one_line(changes, message):
    with pytest.raises(SaePaperError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**changes)


def test_unknown_fields_and_missing_files(tmp_path):
    with pytest.raises(SaePaperError, match="unknown config field\\(s\\): colour"):
        load_config(None, colour="red")
    with pytest.raises(SaePaperError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cache_key_depends_only_on_the_named_fields():
    base = RunConfig()
    assert base.key(*HARVEST_FIELDS) == base.replace(alpha=0.5, epochs=9).key(*HARVEST_FIELDS)
    assert base.key(*HARVEST_FIELDS) != base.replace(layer=4).key(*HARVEST_FIELDS)


def test_every_field_is_documented():
    docs = field_docs()
    assert set(docs) == set(RunConfig.__dataclass_fields__)
    assert all(len(text) > 10 for text in docs.values())


@pytest.mark.parametrize("argv,message", [
    (["run", "--set", "model=gpt2"], "error: unknown model 'gpt2'"),
    (["harvest", "--set", "layer=40"], "error: smollm2-135m has layers 0..29"),
    (["train", "--set", "source=pile"], "error: unknown text source 'pile'"),
    (["evaluate", "--set", "colour"], "error: --set takes field=value"),
])
def test_cli_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_cli_missing_shared_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SAE_PAPER_SHARED", str(tmp_path / "absent"))
    assert main(["harvest"]) == 2
    assert "shared folder not found" in capsys.readouterr().err


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("alpha: 1e-3\nlr: 3e-4\n")  # YAML 1.1 reads these as strings
    config = load_config(path)
    assert (config.alpha, config.lr) == (1e-3, 3e-4)
    with pytest.raises(SaePaperError, match="alpha='big': must be a number"):
        load_config(None, alpha="big")


@pytest.mark.parametrize("argv", [[], ["book"], ["run"], ["export"], ["fields"]])
def test_help_is_plain_text_not_the_docstring_markup(argv, capsys):
    from sae_paper.cli import build_parser, plain_text

    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    shown = capsys.readouterr().out
    assert "usage: sae-paper" in shown
    assert "``" not in shown and not re.search(r":[a-z]+:`", shown), shown
    assert plain_text("see :mod:`~sae_paper.book.runner` and ``x=1``") == "see runner and x=1"
