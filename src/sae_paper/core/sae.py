"""Tied and untied ReLU + L1 sparse autoencoders, as in Section 2 and Appendix C.3.

The paper learns a dictionary of ``d_sae = R · d_in`` unit-norm feature directions
``f_i`` for activations ``x ∈ R^d_in`` with one hidden layer:

- **tied** (the main runs): ``c = ReLU(M̂ x + b)``, ``x̂ = M̂ᵀ c``, where ``M̂`` is ``M``
  with each row divided by its norm *inside the forward pass*, so the rows are unit
  vectors whatever Adam does to ``M``. There is no decoder bias.
- **untied** (Appendix C.3, for MLP layers): ``c = ReLU(M_e x + b)``, ``x̂ = M̂_dᵀ c``;
  only the decoder rows are normalised, the encoder is free.

The loss is ``L = mean_{batch, d_in} (x̂ − x)²  +  α · mean_batch ||c||₁``. That
normalisation is the authors' code (``l_reconstruction = (x_hat - batch).pow(2).mean()``,
``l_l1 = l1_alpha * torch.norm(c, 1, dim=-1).mean()``), not the ``||x − x̂||²₂`` of the
paper's equation: the squared error is averaged over the ``d_in`` dimensions while the
L1 norm is summed over features, so α weighs one unit of code against one unit of
*per-dimension* error. The paper's α = 8.6e-4 (residual stream) and 3.2e-4 (MLP) only
mean what they meant there under this normalisation.

Initialisation follows the authors' code: ``M`` is Xavier-uniform (bound
``sqrt(6 / (d_in + d_sae))``), ``b = 0``, drawn from a generator seeded by ``seed`` so
an SAE is a function of its seed. One deliberate difference: the authors drew the
untied encoder independently of the decoder; here ``M_e`` starts as ``M̂_d``, so an
untied SAE starts as exactly the tied SAE of the same seed and the two differ only in
the constraint (Appendix C.3 compares them), the "encoder = decoder transpose" start
of later SAE work.

Both kinds share everything but their weights: a variant only says how to make its
parameters and how they give the (encoder, bias, decoder) triple, :class:`SaeWeights`,
given a row-normalisation function. The base class owns encode/decode, the loss, input
checks and save/load; a registry maps the saved ``kind`` back to the class, so
:func:`load_sae` needs no if/elif.

:meth:`SparseAutoencoder.forward` runs the fused kernels of :mod:`sae_paper.core.kernels`:
two autograd nodes with hand-written backwards, one for the row normalisation and one for
encoder, decoder and loss, dense or sparse, as :func:`~sae_paper.core.kernels.choose_path`
picks for the device (both compute the same function). The training step
(:func:`sae_paper.core.train.train_step`) calls the same kernels through
:meth:`~SparseAutoencoder.fused_weights` and :meth:`~SparseAutoencoder.output`, adding what
only training needs: a forced kernel and the firing counts.
:meth:`SparseAutoencoder.reference_forward` computes the same outputs with plain autograd
from :meth:`~SparseAutoencoder.encode` and :meth:`~SparseAutoencoder.decode`; the tests
assert the paths agree, gradients included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sae_paper.core.kernels import NORM_EPS, NormalizeRows, fused_sae
from sae_paper.data.cache import atomic_write
from sae_paper.errors import SaePaperError

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "sae.json"
FORMAT_VERSION = 1


class SaeOutput(NamedTuple):
    """What :meth:`SparseAutoencoder.forward` returns for a batch ``x``."""

    x_hat: Float[Tensor, "batch d_in"]
    """The reconstruction ``x̂ = c · D̂`` (D̂: unit-norm decoder rows)."""
    codes: Float[Tensor, "batch d_sae"]
    """The non-negative feature activations ``c = ReLU(x Eᵀ + b)``."""
    mse: Float[Tensor, ""]
    """``(x̂ − x)²`` averaged over batch and d_in."""
    l1: Float[Tensor, ""]
    """``||c||₁`` (summed over features) averaged over the batch."""
    loss: Float[Tensor, ""]
    """``mse + α · l1``, what training minimises."""


class SaeWeights(NamedTuple):
    """The effective weights of one forward pass (normalisation already applied)."""

    encoder: Float[Tensor, "d_sae d_in"]
    bias: Float[Tensor, " d_sae"]
    decoder: Float[Tensor, "d_sae d_in"]
    """Unit-norm rows: the dictionary features ``f_i``."""


def normalize_rows(matrix: Float[Tensor, "d_sae d_in"]) -> Float[Tensor, "d_sae d_in"]:
    """Each row divided by ``max(its norm, NORM_EPS)``, differentiably (as the authors' code)."""
    return F.normalize(matrix, dim=1, eps=NORM_EPS)


class SparseAutoencoder(nn.Module):
    """A one-layer ReLU autoencoder with unit-norm decoder rows and an L1 penalty.

    Subclasses set ``kind``, create their matrices in :meth:`_init_matrices` and say
    how they form the effective weights in :meth:`_weights`; everything else is here.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        alpha: float = 0.0,
        seed: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        for name, value in (("d_in", d_in), ("d_sae", d_sae)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SaePaperError(f"SAE {name} must be a positive integer, got {value!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise SaePaperError(f"SAE alpha must be a finite non-negative number, got {alpha!r}")
        self.d_in = d_in
        self.d_sae = d_sae
        self.alpha = float(alpha)
        """L1 coefficient of :attr:`SaeOutput.loss`; saved with the SAE (the paper names dictionaries by α)."""
        self.metadata: dict[str, Any] = dict(metadata or {})
        """Free-form provenance (model, site, layer, config, ...), saved in ``sae.json``."""
        generator = torch.Generator().manual_seed(seed)
        self.b = nn.Parameter(torch.zeros(d_sae))
        self._init_matrices(generator)

    # --- what a variant supplies -------------------------------------------------------

    def _init_matrices(self, generator: torch.Generator) -> None:
        """Create the variant's weight matrices as parameters, drawing from ``generator``."""
        raise NotImplementedError

    def _weights(self, normalize: Callable[[Tensor], Tensor]) -> SaeWeights:
        """The (encoder, bias, decoder), with ``normalize`` applied to the rows that must be unit-norm."""
        raise NotImplementedError

    def weights(self) -> SaeWeights:
        """The (encoder, bias, decoder) of this SAE, normalisation applied (differentiable)."""
        return self._weights(normalize_rows)

    def fused_weights(self) -> SaeWeights:
        """:meth:`weights` with the fused kernels' row normalisation (same values, a hand-written backward)."""
        return self._weights(NormalizeRows.apply)

    # --- the model ------------------------------------------------------------------------

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Feature activations ``c = ReLU(x Eᵀ + b)``."""
        self.check_input(x)
        encoder, bias, _ = self.weights()
        return torch.relu(torch.addmm(bias, x, encoder.t()))

    def decode(self, codes: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_in"]:
        """Reconstruction ``x̂ = c D̂`` (a sum of unit-norm features weighted by their codes)."""
        self._check(codes, self.d_sae, "codes", "d_sae")
        return codes @ self.weights().decoder

    def feature_directions(self) -> Float[Tensor, "d_sae d_in"]:
        """The dictionary: unit-norm feature directions ``f_i`` (decoder rows), e.g. for patching."""
        return self.weights().decoder

    def forward(self, x: Float[Tensor, "batch d_in"]) -> SaeOutput:
        """Reconstruction, codes and loss of a batch, by the fused kernels (dense or sparse as
        :func:`~sae_paper.core.kernels.choose_path` picks for the device: the same function)."""
        self.check_input(x)
        return self.output(*fused_sae(x, *self.fused_weights()))

    def reference_forward(self, x: Float[Tensor, "batch d_in"]) -> SaeOutput:
        """The same as :meth:`forward`, written plainly with autograd (the reference the tests check)."""
        codes = self.encode(x)
        x_hat = self.decode(codes)
        mse = (x_hat - x).pow(2).mean()
        l1 = codes.abs().sum(dim=-1).mean()
        return self.output(x_hat, codes, mse, l1)

    def output(self, x_hat: Tensor, codes: Tensor, mse: Tensor, l1: Tensor) -> SaeOutput:
        """The :class:`SaeOutput` of these terms: the one place the loss ``mse + α · l1`` is formed."""
        return SaeOutput(x_hat, codes, mse, l1, mse + self.alpha * l1)

    def check_input(self, x: Any) -> None:
        """One clear line if ``x`` is not a [batch, d_in] tensor of this SAE's dtype and device."""
        self._check(x, self.d_in, "input x", "d_in")

    def _check(self, tensor: Any, width: int, what: str, dim_name: str) -> None:
        """One clear line if ``tensor`` is not a [batch, width] tensor of this SAE's dtype and device."""
        if not isinstance(tensor, Tensor):
            raise SaePaperError(
                f"SAE {what} must be a torch.Tensor [batch, {dim_name}={width}], got {type(tensor).__name__}"
            )
        if tensor.ndim != 2 or tensor.shape[1] != width:
            raise SaePaperError(f"SAE {what} must have shape [batch, {dim_name}={width}], got {tuple(tensor.shape)}")
        expected = self.b
        if tensor.dtype != expected.dtype:
            raise SaePaperError(f"SAE {what} must have dtype {expected.dtype} (the SAE's), got {tensor.dtype}")
        if tensor.device != expected.device:
            raise SaePaperError(f"SAE {what} must be on {expected.device} (the SAE's device), got {tensor.device}")

    # --- save / load -----------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """What ``sae.json`` holds: enough to rebuild the module before loading its weights."""
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "alpha": self.alpha,
            "metadata": self.metadata,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``sae.safetensors`` and ``sae.json`` into ``directory`` (each atomically); return it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            config_text = json.dumps(self.config_dict(), indent=2, sort_keys=True)
        except TypeError as error:
            raise SaePaperError(f"SAE metadata must be JSON-serialisable: {error}") from None
        tensors = {name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write(directory / CONFIG_FILE, lambda tmp: tmp.write_text(config_text + "\n"))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SparseAutoencoder":
        """The SAE saved in ``directory`` (any kind when called on the base class)."""
        sae = load_sae(directory)
        if not isinstance(sae, cls):
            raise SaePaperError(f"{directory} holds a {sae.kind!r} SAE, not a {cls.__name__}")
        return sae

    def extra_repr(self) -> str:
        return f"kind={self.kind}, d_in={self.d_in}, d_sae={self.d_sae}, alpha={self.alpha:g}"


SAE_KINDS: dict[str, type[SparseAutoencoder]] = {}
"""Saved ``kind`` → class. Filled by :func:`register_sae`."""


def register_sae(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
    """Class decorator adding ``cls`` to :data:`SAE_KINDS` under ``cls.kind``; names are unique."""
    if cls.kind in SAE_KINDS:
        raise ValueError(f"SAE kind {cls.kind!r} is already registered to {SAE_KINDS[cls.kind].__name__}")
    SAE_KINDS[cls.kind] = cls
    return cls


@register_sae
class TiedSAE(SparseAutoencoder):
    """``c = ReLU(M̂ x + b)``, ``x̂ = M̂ᵀ c``: one matrix ``M`` [d_sae, d_in] is both encoder and dictionary."""

    kind = "tied"

    def _init_matrices(self, generator: torch.Generator) -> None:
        self.M = nn.Parameter(_xavier_uniform(self.d_sae, self.d_in, generator))

    def _weights(self, normalize: Callable[[Tensor], Tensor]) -> SaeWeights:
        m_hat = normalize(self.M)
        return SaeWeights(m_hat, self.b, m_hat)


@register_sae
class UntiedSAE(SparseAutoencoder):
    """``c = ReLU(M_e x + b)``, ``x̂ = M̂_dᵀ c`` (Appendix C.3): the encoder is free, the dictionary unit-norm."""

    kind = "untied"

    def _init_matrices(self, generator: torch.Generator) -> None:
        decoder = _xavier_uniform(self.d_sae, self.d_in, generator)
        self.M_e = nn.Parameter(normalize_rows(decoder))
        self.M_d = nn.Parameter(decoder)

    def _weights(self, normalize: Callable[[Tensor], Tensor]) -> SaeWeights:
        return SaeWeights(self.M_e, self.b, normalize(self.M_d))


@register_sae
class ImportedUntiedSAE(UntiedSAE):
    """An untied SAE made elsewhere (:func:`sae_paper.interop.saelens.import_saelens`), its decoder used as stored.

    The import checked that the decoder rows are unit-norm, so this is the untied SAE of
    Appendix C.3; only the per-forward renormalisation is left out, because dividing rows of
    norm 1 ± 1 ulp by their norm again changes their last bits: the codes and
    reconstructions would no longer be bit-equal to the source library's, and an export of
    the import would not be byte-identical to the original. For analysis, not training
    (nothing would keep the rows unit-norm; train an :class:`UntiedSAE` instead).
    """

    kind = "untied-imported"

    def _weights(self, normalize: Callable[[Tensor], Tensor]) -> SaeWeights:
        return SaeWeights(self.M_e, self.b, self.M_d)


def make_sae(
    kind: str,
    d_in: int,
    d_sae: int,
    *,
    alpha: float = 0.0,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> SparseAutoencoder:
    """A freshly initialised SAE of the registered ``kind`` ("tied" or "untied")."""
    return _sae_class(kind, "requested")(d_in, d_sae, alpha=alpha, seed=seed, metadata=metadata)


def load_sae(directory: str | Path) -> SparseAutoencoder:
    """The SAE that :meth:`SparseAutoencoder.save` wrote into ``directory``, on the CPU."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise SaePaperError(f"no saved SAE in {directory}: missing {path.name}")
    try:
        config = json.loads(config_path.read_text())
        kind, d_in, d_sae = config["kind"], config["d_in"], config["d_sae"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SaePaperError(f"unreadable SAE config {config_path}: {error!r}") from None
    if config.get("format") != FORMAT_VERSION:
        raise SaePaperError(f"SAE config {config_path} has format {config.get('format')!r}, expected {FORMAT_VERSION}")
    tensors = load_file(str(weights_path))
    sae = _sae_class(kind, f"saved in {config_path}")(
        d_in, d_sae, alpha=config.get("alpha", 0.0), metadata=config.get("metadata")
    )
    dtypes = {tensor.dtype for tensor in tensors.values()}
    if len(dtypes) == 1:
        sae.to(dtype=dtypes.pop())
    try:
        sae.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        why = " ".join(str(error).strip().splitlines())
        raise SaePaperError(f"weights in {weights_path} do not fit the {kind} SAE of {config_path}: {why}") from None
    return sae


def _sae_class(kind: str, where: str) -> type[SparseAutoencoder]:
    try:
        return SAE_KINDS[kind]
    except (KeyError, TypeError):
        raise SaePaperError(f"unknown SAE kind {kind!r} {where} (known: {', '.join(sorted(SAE_KINDS))})") from None


def _xavier_uniform(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    matrix = torch.empty(rows, cols)
    nn.init.xavier_uniform_(matrix, generator=generator)
    return matrix

