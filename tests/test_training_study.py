"""Notebook 01's parameters, the SAEs they imply, the verdict rules, and the figures."""

from __future__ import annotations

import pytest
import yaml
from matplotlib.figure import Figure

from sae_paper.book.profiles import study_classes
from sae_paper.chapters.training import (
    TrainingStudy,
    epochs_finding,
    mlp_dead_finding,
    resid_alive_finding,
    splice_finding,
    tradeoff_finding,
    train_runtime_finding,
    untied_finding,
)
from sae_paper.core import sweeps
from sae_paper.core.metrics import SpliceMetrics
from sae_paper.core.sweeps import RecordTable, SweepRecord, collect, markdown_table, select
from sae_paper.data.paths import repo_root
from sae_paper.errors import SaePaperError


def rec(alpha=1e-3, *, site="mlp_post.0", kind="tied", ratio=1.0, epochs=2, fvu=0.5, l0=10.0, alive=100, d_sae=100):
    return SweepRecord(model="m", site=site, kind=kind, ratio=ratio, alpha=alpha, epochs=epochs, n_tokens=1000,
                       d_sae=d_sae, fvu=fvu, mean_l0=l0, alive_eval=alive, n_eval=100, alive=alive,
                       alive_threshold=10, train_seconds=1.0, activations_per_s=2000.0)


@pytest.mark.parametrize("notebook", sorted(study_classes()))
def test_default_profile_and_notebook_parameters_match_the_dataclass_defaults(notebook):
    """One source of truth per parameter, the study dataclass: every notebook's parameters cell and the default
    profile repeat its defaults exactly, and every profile sets only its fields."""
    import jupytext

    study = study_classes()[notebook]
    defaults = study().parameters()
    profiles = {path.stem: yaml.safe_load(path.read_text()) for path in sorted((repo_root() / "profiles").glob("*.yaml"))}
    assert study.from_params(profiles["default"][notebook]).parameters() == defaults
    for name, profile in profiles.items():
        unknown = set(profile.get(notebook) or {}) - set(defaults)
        assert not unknown, f"profiles/{name}.yaml sets {sorted(unknown)} for {notebook}, not fields of {study.__name__}"
    cell = next(c for c in jupytext.read(repo_root() / "notebooks" / f"{notebook}.py").cells
                if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    assert {k: v for k, v in namespace.items() if k in defaults} == defaults
    assert set(namespace) - {"__builtins__"} == set(defaults) | {"profile"}


def test_configs_resolve_alpha_and_are_shared_between_figures():
    study = TrainingStudy(model="pythia-70m-deduped-random", layer=2, resid_alphas=(8.6e-4, 1e-3),
                          mlp_alphas=(0.0, 3.2e-4), epoch_list=(1, 2), mlp_epochs=2, fig7_alphas=(), untied_alphas=(3.2e-4,),
                          resid_ratios=(2.0,), mlp_ratios=(1.0,))
    main = study.main_config()
    assert main.alpha == 8.6e-4 and main.site == "resid_post" and main.layer == 2
    assert study.alpha_sweep("resid_post")[0] == main  # default alpha made explicit: same SAE, same cache
    assert study.ratio_sweep("resid_post") == [main]
    assert study.epoch_sweep()[2] == study.alpha_sweep("mlp_post")
    assert study.ratio_sweep("mlp_post")[0] == study.alpha_sweep("mlp_post")[1]
    tied, untied = study.untied_pairs()[0]
    assert tied == study.alpha_sweep("mlp_post")[1] and untied.sae == "untied"
    configs = study.all_configs()
    assert configs[0] == main and len(configs) == len(set(configs)) == 7  # main, 1e-3, 2 MLP, 2 one-epoch, untied


@pytest.mark.parametrize("params,message", [
    ({"layer": 30}, "layer 30 does not exist"),
    ({"mlp_alphas": []}, "mlp_alphas must not be empty"),
    ({"mlp_alphas": 0.1}, "must be a list"),
    ({"resid_alphas": [-1.0]}, "alphas must be numbers >= 0"),
    ({"epoch_list": [0]}, "epochs must be positive integers"),
    ({"colour": 1}, "unknown 01_training parameter\\(s\\): colour"),
    ({"model": "gpt-5"}, "unknown model 'gpt-5'"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(SaePaperError, match=message):
        TrainingStudy.from_params(params)


def test_tradeoff_verdict_needs_monotone_steps():
    good = [rec(1e-4, fvu=0.1, l0=50), rec(3e-4, fvu=0.2, l0=20), rec(1e-3, fvu=0.4, l0=5)]
    assert tradeoff_finding({"mlp_post.0": good}).verdict == "reproduced"
    bumpy = [*good, rec(3e-3, fvu=0.39, l0=2), rec(1e-2, fvu=0.6, l0=1)]
    assert tradeoff_finding({"mlp_post.0": bumpy}).verdict == "partly"  # 3 of 4 steps monotone
    assert tradeoff_finding({"mlp_post.0": good[:2]}).verdict == "not"  # too few points to say
    assert tradeoff_finding({"mlp_post.0": good, "resid_post.3": good[:2]}).verdict == "reproduced"  # short one not judged
    assert tradeoff_finding({"mlp_post.0": good, "resid_post.3": good[:2]}).verdict == "reproduced"
    with pytest.raises(SaePaperError):
        tradeoff_finding({"mlp_post.0": good[:1]})


def test_epochs_verdict_is_pareto_dominance_at_equal_alpha():
    one = [rec(1e-4, epochs=1, fvu=0.3, l0=40), rec(3e-4, epochs=1, fvu=0.5, l0=20)]
    two = [rec(1e-4, epochs=2, fvu=0.25, l0=40), rec(3e-4, epochs=2, fvu=0.45, l0=18)]
    assert epochs_finding({1: one, 2: two}).verdict == "reproduced"
    worse = [rec(1e-4, epochs=2, fvu=0.25, l0=40), rec(3e-4, epochs=2, fvu=0.55, l0=18)]
    assert epochs_finding({1: one, 2: worse}).verdict == "partly"
    assert epochs_finding({1: two, 2: one}).verdict == "not"


def test_alive_and_dead_verdicts():
    resid = [rec(site="resid_post.3", ratio=r, alive=a, d_sae=d) for r, a, d in ((1, 576, 576), (4, 2200, 2304))]
    assert resid_alive_finding(resid).verdict == "reproduced"  # 95% alive at worst
    assert resid_alive_finding([*resid, rec(site="resid_post.3", ratio=8, alive=10, d_sae=4608)]).verdict == "reproduced"
    assert resid_alive_finding([rec(ratio=2, alive=60, d_sae=100)]).verdict == "partly"
    assert resid_alive_finding([rec(ratio=2, alive=40, d_sae=100)]).verdict == "not"

    assert mlp_dead_finding([rec(0.0, alive=80), rec(1e-3, alive=50)]).verdict == "reproduced"
    assert mlp_dead_finding([rec(0.0, alive=100), rec(1e-3, alive=50)]).verdict == "partly"
    assert mlp_dead_finding([rec(0.0, alive=100), rec(1e-3, alive=95)]).verdict == "not"


def test_untied_verdict():
    pairs = [(rec(0.0, alive=90), rec(0.0, kind="untied", alive=95)),
             (rec(1e-3, alive=50), rec(1e-3, kind="untied", alive=50))]
    assert untied_finding(pairs).verdict == "reproduced"
    pairs.append((rec(3e-3, alive=40), rec(3e-3, kind="untied", alive=30)))
    assert untied_finding(pairs).verdict == "partly"
    assert untied_finding(pairs[2:]).verdict == "not"


def test_splice_and_runtime_verdicts():
    paper_like = SpliceMetrics(ce_clean=3.2189, ce_spliced=3.6889, ce_zero=7.0, n_tokens=100)  # 25 -> 40
    assert splice_finding(paper_like, model="pythia-70m-deduped", site="resid_post.2").verdict == "reproduced"
    assert splice_finding(paper_like, model="smollm2-135m", site="resid_post.3").verdict == "partly"
    far = SpliceMetrics(ce_clean=3.0, ce_spliced=5.0, ce_zero=7.0, n_tokens=100)
    assert splice_finding(far, model="pythia-70m-deduped", site="resid_post.2").verdict == "not"
    other = splice_finding(far, model="smollm2-135m", site="resid_post.3")  # measured, so judged: not, setting stated
    assert other.verdict == "not" and "4.62 times above" in other.note and "a different setting" in other.note

    assert train_runtime_finding(10, 1e6, 10_000).verdict == "reproduced"  # 150M in 150 s
    assert train_runtime_finding(10, 1e4, 10_000).verdict == "partly"  # 5M in 8 min, 150M in 4 h
    assert train_runtime_finding(10, 1e3, 10_000).verdict == "not"


def test_figures_have_labelled_axes_and_titles():
    from sae_paper.report import plots

    mlp = [rec(0.0, fvu=0.1, l0=300), rec(1e-4, fvu=0.3, l0=30), rec(1e-3, fvu=0.6, l0=3)]
    resid = [rec(1e-2, site="resid_post.3", ratio=r, alive=int(90 * r), d_sae=int(100 * r)) for r in (1, 2)]
    untied = [(r, rec(r.alpha, kind="untied", alive=100)) for r in mlp]
    figures = [
        plots.splice_perplexity(SpliceMetrics(3.0, 3.5, 7.0, 100), label="m resid_post.3"),
        plots.fig6_tradeoff({"mlp_post.0": mlp, "resid_post.3": resid}),
        plots.fig7_epochs({1: mlp, 2: mlp}),
        plots.fig16_alive({"mlp_post.0": mlp}, {"resid_post.3": resid}, untied),
    ]
    for figure in figures:
        assert isinstance(figure, Figure) and figure.axes
        for ax in figure.axes:
            assert ax.get_xlabel() or ax.get_xticklabels(), "x axis unlabelled"
            assert ax.get_ylabel() and ax.get_title()
    assert len(figures[3].axes) == 3


def test_record_helpers():
    records = [rec(1e-4), rec(1e-3, kind="untied")]
    resid = rec(1e-2, site="resid_post.3")
    assert collect({"mlp_post.0": records, "resid_post.3": [resid]}, records[:1], site_kind="mlp_post") == records
    assert collect([resid, resid], site_kind="resid_post") == [resid]
    assert select(records, kind="untied") == records[1:]
    with pytest.raises(SaePaperError, match="unknown sweep record field"):
        select(records, colour="red")
    assert markdown_table(records).count("\n") == 4


def test_train_runtime_says_how_many_threads_trained_the_sae():
    from sae_paper.chapters.training import hardware_phrase, train_runtime_finding

    lane = hardware_phrase({"torch_threads": 1, "cpus_usable": 2, "gpu": None})
    assert lane == "1 torch thread on 2 CPU cores"
    assert hardware_phrase({"torch_threads": 1, "cpus_usable": 1}) == "1 torch thread on 1 CPU core"
    assert hardware_phrase({"torch_threads": 2, "cpus_usable": 2, "gpu": "NVIDIA H200"}) == \
        "2 torch threads on 2 CPU cores + NVIDIA H200"
    assert "activations/s) on 1 torch thread on 2 CPU cores;" in train_runtime_finding(12, 12_705, 196_608, hardware=lane).ours


def test_sweeps_by_site_skip_empty_sweeps_keep_their_order_and_join_into_one_table(monkeypatch):
    """Figures 6 and 16 read sweeps keyed by site; an empty sweep (a site the profile does not sweep) adds no key."""
    ran = []

    def fake_run_sweep(configs):
        ran.append(list(configs))
        return [rec(alpha, site=site) for site, alpha in configs]

    monkeypatch.setattr(sweeps, "run_sweep", fake_run_sweep)
    by_site = sweeps.run_by_site([[("mlp_post.0", 1e-3), ("mlp_post.0", 2e-3)], [], [("resid_post.3", 5e-3)]])
    assert list(by_site) == ["mlp_post.0", "resid_post.3"] and len(ran) == 2
    assert [r.alpha for r in by_site["mlp_post.0"]] == [1e-3, 2e-3]
    assert all(isinstance(table, RecordTable) for table in by_site.values())
    joined = RecordTable.joined(by_site.values())
    assert isinstance(joined, RecordTable) and [r.alpha for r in joined] == [1e-3, 2e-3, 5e-3]
