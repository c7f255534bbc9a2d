"""``sae-paper book --profile NAME --plan``: what a profile would compute, and for how long, before the spend.

Per notebook, counted from the same lists the runner works from (never a second hand-written
one): the activations to harvest (:func:`~sae_paper.book.harvest.book_harvest_requests`, merged by
text and site as :func:`~sae_paper.data.activations.harvest_all` merges them: rows, and GB on disk
in the profile's dtype), the SAEs to train (the study's ``all_configs()``: count, activations ×
epochs), the tokens run through the model (harvest, evaluation, autointerp fragments) and the LLM
calls with their prompt tokens (the prompts of :mod:`sae_paper.analysis.autointerp.backends`, built
on placeholder fragments). A notebook lists only what no notebook before it already computes
(the runner harvests and trains each thing once).

Then the hours: a calibration of a few seconds times a few SAE steps of the plan's widths
(:func:`~sae_paper.core.train.train_step`, the training loop's step) and a forward pass of a
one- and a two-layer random-weight transformer of each model's widths (the per-layer time × the
layers a pass runs through, plus the unembedding), on this machine's device. On N
GPUs the harvest splits over ranks by shards and the SAEs by whole runs, largest first, so N
GPUs take ``harvest / N + max(training / N, the largest SAE)``: an ideal split, before
transfers. Patching, ablations and causal trees are not counted (they are small beside the
training at the paper's scale; the notebooks' own timings show them).

Nothing is computed, harvested or written: no cache entry, no model weights read.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
CALIBRATION_ROWS_CPU, CALIBRATION_ROWS_GPU = 64, 4096
"""Rows of a calibration SAE step on the CPU and on a GPU (the time is scaled per row; a GPU needs a large batch to be
busy)."""
VOCAB = 50_304
"""The unembedding's width in the calibration (Pythia's padded vocabulary; SmolLM2's is 49,152)."""


@dataclass
class NotebookPlan:
    notebook: str
    harvest: dict[tuple[str, str], int] = field(default_factory=dict)
    """(text folder, site) → rows, only those no earlier notebook harvests as many of."""
    harvest_bytes: int = 0
    saes: list[Any] = field(default_factory=list)
    """The RunConfigs this notebook trains first (earlier notebooks' are reused)."""
    sae_rows: int = 0
    """Σ activations × epochs over :attr:`saes`."""
    harvest_tokens: dict[str, int] = field(default_factory=dict)
    """model name → tokens through it to harvest (activations and autointerp fragments)."""
    eval_tokens: dict[str, int] = field(default_factory=dict)
    """model name → tokens through it to evaluate :attr:`saes` (spliced CE)."""
    llm_calls: int = 0
    prompt_tokens: int = 0

    @property
    def forward_tokens(self) -> dict[str, int]:
        return {m: self.harvest_tokens.get(m, 0) + self.eval_tokens.get(m, 0) for m in {**self.harvest_tokens, **self.eval_tokens}}


def _width(model: str, site: Any) -> int:
    from sae_paper.data.models import model_spec

    return site.width(model_spec(model))


def _prompt_tokens(length: int, n_explain: int) -> tuple[int, int]:
    """(explainer, simulator) prompt tokens for ``length``-token fragments, at ~4 characters a token."""
    from sae_paper.analysis.autointerp.backends import ActivationRecord, explain_prompt, simulate_body, simulate_prefix

    tokens = tuple(f" w{i % 10}" for i in range(length))
    record = ActivationRecord(tokens, tuple((i * 7) % 11 for i in range(length)))
    explain = explain_prompt([record] * n_explain)
    simulate = simulate_prefix("words about a topic") + simulate_body(tokens)[0]
    return math.ceil(len(explain) / 4), math.ceil(len(simulate) / 4)


def _llm(study: Any) -> tuple[int, int]:
    """Up to how many explainer + simulator calls notebook 02's scoring makes, and their prompt tokens: each scored
    decomposition's features (one explanation, then one simulation per top and random fragment), at every seed and
    fragment budget (the call cache answers the repeats)."""
    if not hasattr(study, "scoring") or {study.explainer, study.simulator} == {"token-list"}:
        return 0, 0  # token-list scores without a language model
    extra_ratios = sum(1 for r in study.fig8_ratios if r != study.ratio)
    decompositions = study.n_seeds * (len(study.layers) * len(study.methods) + extra_ratios)
    decompositions += len(study.fragment_budgets) * len(study.methods)
    explain, simulate = _prompt_tokens(study.fragment_length, study.n_explain)
    n_sim = study.n_simulate_top + study.n_random
    features = decompositions * study.n_features
    return features * (1 + n_sim), features * (explain + n_sim * simulate)


def plan_book(parameters: Mapping[str, Mapping[str, Any]], requests: Callable[..., list]) -> list[NotebookPlan]:
    """Each notebook's :class:`NotebookPlan`, in the runner's order; computes nothing. ``requests``: the runner's
    :func:`~sae_paper.book.harvest.book_harvest_requests` (passed in)."""
    from sae_paper.book.profiles import study_classes

    studies = study_classes()
    harvested: dict[tuple[str, str], int] = {}
    trained: set[Any] = set()
    plans = []
    for name, values in parameters.items():
        plan = NotebookPlan(name)
        plans.append(plan)
        tokens_by_text: dict[str, tuple[str, int, int]] = {}
        for spec, site in requests({name: values}):
            key = (json.dumps({"model": spec.model, **spec.text_key()}, sort_keys=True), str(site))  # folder() makes it
            if spec.n_tokens > max(harvested.get(key, 0), plan.harvest.get(key, 0)):
                extra = spec.n_tokens - max(harvested.get(key, 0), plan.harvest.get(key, 0))
                plan.harvest[key] = spec.n_tokens
                plan.harvest_bytes += extra * _width(spec.model, site) * BYTES.get(spec.dtype, 4)
                model, ctx, rows = tokens_by_text.get(key[0], (spec.model, spec.context_length, 0))
                tokens_by_text[key[0]] = (model, ctx, max(rows, extra))
        for model, ctx, rows in tokens_by_text.values():  # one pass per text writes every site; BOS rows are not kept
            plan.harvest_tokens[model] = plan.harvest_tokens.get(model, 0) + math.ceil(rows * ctx / (ctx - 1))
        harvested.update(plan.harvest)
        if name not in studies:
            continue
        study = studies[name].from_params(values)
        # the random-model controls' SAEs (their α, still to be searched, changes no cost) with the study's own
        for config in [*study.all_configs(), *getattr(study, "control_configs", list)()]:
            if config in trained:
                continue
            trained.add(config)
            plan.saes.append(config)
            plan.sae_rows += config.n_tokens * config.epochs
            plan.eval_tokens[config.model] = plan.eval_tokens.get(config.model, 0) + config.eval_tokens
        if hasattr(study, "scoring"):
            fragments = study.n_fragments * study.fragment_length
            for model in (study.model, *getattr(study, "controls", ())):  # each control scores the same fragments
                plan.harvest_tokens[model] = plan.harvest_tokens.get(model, 0) + fragments
        plan.llm_calls, plan.prompt_tokens = _llm(study)
    return plans


# --------------------------------------------------------------------------------------
# Calibration: seconds per SAE step and per token through a layer, on this device
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    device: str
    step_seconds: dict[int, float]
    """d_in → seconds of one training step per row and per dictionary feature."""
    layer_seconds: dict[str, tuple[float, float]]
    """model → (seconds per token through one layer, per token outside the layers)."""
    seconds: float


def _timed(function: Callable[[], Any], repeats: int = 3) -> float:
    function()  # warm-up
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def calibrate(plans: Sequence[NotebookPlan], device: str | None = None) -> Calibration:
    """Time a few SAE steps of each width the plans train and a short forward pass of each model's shape."""
    import torch

    from sae_paper.core.sae import make_sae
    from sae_paper.core.train import make_optimizer, train_step
    from sae_paper.data.device import device_type, resolve_device, synchronize
    from sae_paper.data.models import Site

    device = device or str(resolve_device("auto"))
    started = time.perf_counter()
    shapes = {}
    for config in (c for plan in plans for c in plan.saes):
        d_in = _width(config.model, Site(config.site, config.layer))
        shapes.setdefault(d_in, config.sae)
    generator = torch.Generator().manual_seed(0)
    rows = CALIBRATION_ROWS_CPU if device_type(device) == "cpu" else CALIBRATION_ROWS_GPU
    steps = {}
    for d_in, kind in shapes.items():
        sae = make_sae(kind, d_in, d_in, alpha=1e-3).to(device)  # R = 1; the time is scaled by d_sae
        optimizer = make_optimizer(sae, 1e-3)
        batch = torch.randn(rows, d_in, generator=generator).to(device)
        steps[d_in] = _timed(lambda sae=sae, optimizer=optimizer, batch=batch: (train_step(sae, optimizer, batch), synchronize(device))) / (rows * d_in)
    layers = {}
    for model in dict.fromkeys(m for plan in plans for m in plan.forward_tokens):
        layers[model] = _forward_seconds(model, device)
    return Calibration(device, steps, layers, time.perf_counter() - started)


def _forward_seconds(model: str, device: str) -> tuple[float, float]:
    """(per token per layer, per token outside the layers) of ``model``'s shape: a stack of one and of two random
    transformer blocks of its width, MLP width and heads (torch's own block: attention and a GELU MLP, the FLOPs of
    a Pythia or Llama block within a few per cent, without importing transformers), timed on 4 contexts of 64 tokens;
    outside the layers, the unembedding's matmul onto the vocabulary."""
    import torch

    from sae_paper.data.device import synchronize
    from sae_paper.data.models import model_spec

    spec = model_spec(model)
    x = torch.randn(4, 64, spec.d_model, device=device)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(64, device=device)
    times = []
    for n_layers in (1, 2):
        block = torch.nn.TransformerEncoderLayer(spec.d_model, max(1, spec.d_model // 64), spec.d_mlp, dropout=0.0,
                                                 activation="gelu", batch_first=True)
        net = torch.nn.TransformerEncoder(block, n_layers, enable_nested_tensor=False).to(device).eval()
        with torch.no_grad():
            times.append(_timed(lambda net=net: (net(x, mask=mask, is_causal=True), synchronize(device))) / (4 * 64))
    per_layer = max(times[1] - times[0], times[0] / 2)
    unembed = torch.randn(spec.d_model, VOCAB, device=device)
    rows = x.reshape(-1, spec.d_model)
    with torch.no_grad():
        rest = _timed(lambda: (rows @ unembed, synchronize(device))) / rows.shape[0]
    return per_layer, rest


# --------------------------------------------------------------------------------------
# The estimate and the printout
# --------------------------------------------------------------------------------------


def _sae_seconds(config: Any, calibration: Calibration) -> float:
    from sae_paper.data.models import Site, model_spec

    d_in = _width(config.model, Site(config.site, config.layer))
    d_sae = max(1, round(config.ratio * d_in))
    per_row = calibration.step_seconds[d_in] * d_sae
    layer, rest = calibration.layer_seconds[config.model]
    evaluation = config.eval_tokens * (model_spec(config.model).n_layers * layer + rest)
    return config.n_tokens * config.epochs * per_row + evaluation


def estimate(plans: Sequence[NotebookPlan], calibration: Calibration) -> list[tuple[str, float, float, float]]:
    """(notebook, harvest seconds, training + evaluation seconds, the largest single SAE's seconds) per notebook."""
    from sae_paper.data.models import model_spec

    rows = []
    for plan in plans:
        harvest = 0.0
        for model, tokens in plan.harvest_tokens.items():
            layer, rest = calibration.layer_seconds[model]
            harvest += tokens * (model_spec(model).n_layers * layer + rest)
        per_sae = [_sae_seconds(c, calibration) for c in plan.saes]
        rows.append((plan.notebook, harvest, sum(per_sae), max(per_sae, default=0.0)))
    return rows


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.2f}" if h >= 0.01 else "<0.01"


def _gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e7 else f"{n / 1e6:,.2f} MB"


def plan_lines(plans: Sequence[NotebookPlan], calibration: Calibration, nproc: Sequence[int]) -> list[str]:
    lines = []
    for plan in plans:
        rows = sum(plan.harvest.values())
        tokens = ", ".join(f"{n:,} tokens through {m}" for m, n in plan.forward_tokens.items()) or "none"
        lines += [f"{plan.notebook}:",
                  f"  harvest      {rows:,} rows at {len(plan.harvest)} (text, site) pairs, {_gb(plan.harvest_bytes)} on disk",
                  f"  SAEs         {len(plan.saes)} to train, {plan.sae_rows:,} activations × epochs in all",
                  f"  forward      {tokens}",
                  f"  LLM          up to {plan.llm_calls:,} calls, {plan.prompt_tokens:,} prompt tokens"]
    rows = estimate(plans, calibration)
    columns = list(dict.fromkeys(max(1, int(n)) for n in nproc)) or [1]
    head = f"{'hours':<18}" + "".join(f"{f'{n} × {calibration.device}':>14}" for n in columns)
    lines += ["", f"estimated hours (calibrated in {calibration.seconds:.1f} s on {calibration.device}; "
              "N devices: harvest/N + max(training/N, largest SAE), an ideal split):", head]
    totals = [0.0] * len(columns)
    for notebook, harvest, training, largest in rows:
        cells = [(harvest / n + max(training / n, largest)) / 3600 for n in columns]
        totals = [t + c for t, c in zip(totals, cells)]
        lines.append(f"{notebook:<18}" + "".join(f"{_hours(c):>14}" for c in cells))
    lines.append(f"{'total':<18}" + "".join(f"{_hours(t):>14}" for t in totals))
    return lines


def print_plan(parameters: Mapping[str, Mapping[str, Any]], requests: Callable[..., list], *,
               nproc: Sequence[int] = (1,), log: Callable[[str], None] = print, device: str | None = None) -> list[NotebookPlan]:
    """The plan of ``parameters`` (the runner's resolved notebook parameters), calibrated on ``device``, printed."""
    plans = plan_book(parameters, requests)
    for line in plan_lines(plans, calibrate(plans, device), nproc):
        log(line)
    return plans
