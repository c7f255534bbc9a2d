"""Indirect Object Identification prompts (Section 4), and a check that a model does the task.

IOI (Wang et al. 2022): in "Then, Alice and Bob went to the store. Bob gave a snack to",
a model that has learnt the task predicts the *indirect object* " Alice" rather than the
*subject* " Bob" (the name that is repeated). The paper patches features of the residual
stream between a **base** prompt and a **counterfactual target** prompt in which the
indirect object is replaced by a third name ("... Vanessa and Bob went to the store. Bob
gave a snack to" → " Vanessa"); see :mod:`sae_paper.analysis.patching`.

The generator here follows Wang et al.'s recipe:

- several templates, each with two name slots in the first clause, one subject slot in
  the second, and a place and an object;
- both name orders: ``ABBA`` (the indirect object named first: "Then, Alice and Bob ...
  Bob gave ... to") and ``BABA`` (the subject named first: "Then, Bob and Alice ... Bob
  gave ... to");
- names, places and objects that are **single tokens** (with their leading space) for the
  model in use: words that are not are dropped, and :attr:`IoiDataset.dropped` says which.
  Single tokens keep base and target prompts the same length, token by token, so that every
  position can be patched and the answer is one next-token logit;
- the counterfactual target replaces the indirect object by a third name, different from
  both, everywhere it appears (once, in the first clause).

Every prompt starts with the model's BOS (``<|endoftext|>``, see :mod:`sae_paper.data.models`);
prompts of different templates have different lengths and are right-padded: the model is
causal, so padding after a prompt's last token changes nothing before it, and each
prompt's answer is read at its own last position ``lengths[b] - 1``.

:func:`check_model` measures how well a model does the task: the share of prompts where the
indirect object's logit beats the subject's, and the mean logit difference
``logit(IO) − logit(S)`` at the final position (Wang et al.'s metric).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_paper.errors import SaePaperError

TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
)
"""Wang et al. (2022)-style templates: {A} and {B} are the two names in the order the
prompt says them, {S} the subject (repeated), {PLACE} and {OBJECT} single-token words."""

NAMES: tuple[str, ...] = (
    "Alice", "Bob", "Vanessa", "Mary", "John", "Michael", "Jessica", "Sarah", "David", "James",
    "Robert", "Daniel", "Thomas", "Laura", "Emily", "Kevin", "Rachel", "Paul", "Lisa", "Anna",
    "Mark", "Peter", "Kate", "Tom", "Jack", "Emma", "Lucy", "Sam", "George", "Helen",
    "Andrew", "Richard", "Steven", "Amy", "Brian", "Jennifer", "Christopher", "Stephanie",
    "Nicholas", "Katherine",
)
"""Candidate names (Wang et al.'s list and the paper's Alice/Bob/Vanessa); multi-token ones are dropped per model."""

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
    "park", "beach", "library", "market", "airport", "church",
)
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "drink", "snack", "book", "ball", "letter", "gift", "computer",
    "necklace", "basketball", "bottle", "card",
)
"""Objects all take "a" (no vowel-initial words), so every template reads correctly."""

Order = Literal["ABBA", "BABA"]


@dataclass(frozen=True)
class IoiPrompt:
    """One base prompt and its counterfactual target."""

    base: str
    """The prompt whose answer is ``io`` (without BOS)."""
    target: str
    """The same prompt with ``io`` replaced by ``counterfactual_io``; its answer is that name."""
    io: str
    subject: str
    counterfactual_io: str
    template: int
    """Index into the template tuple used."""
    order: Order
    """ABBA: the indirect object is named first; BABA: the subject is named first."""


@dataclass(frozen=True, eq=False)
class IoiDataset:
    """Tokenised IOI prompts: base and target, right-padded, with BOS at position 0."""

    prompts: tuple[IoiPrompt, ...]
    base_tokens: Int[Tensor, "batch pos"]
    target_tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    """Tokens per prompt, BOS included; the answer is predicted at position ``lengths - 1``."""
    io_ids: Int[Tensor, " batch"]
    subject_ids: Int[Tensor, " batch"]
    counterfactual_ids: Int[Tensor, " batch"]
    dropped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Candidate words left out because they are not single tokens: {"names": ..., "places": ..., "objects": ...}."""

    def __len__(self) -> int:
        return len(self.prompts)


def single_token_words(tokenizer, words: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, dropped): the words whose ``" " + word`` is one token, in the given order."""
    kept, dropped = [], []
    for word in words:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        (kept if len(ids) == 1 else dropped).append(word)
    return tuple(kept), tuple(dropped)


def generate_prompts(
    n_prompts: int,
    *,
    names: tuple[str, ...],
    places: tuple[str, ...],
    objects: tuple[str, ...],
    templates: tuple[str, ...] = TEMPLATES,
    seed: int = 0,
) -> tuple[IoiPrompt, ...]:
    """``n_prompts`` prompts from a seeded generator; name orders alternate ABBA, BABA, ...

    Templates cycle too (prompt ``i`` uses template ``i // 2 % len(templates)``), so every
    template appears in both orders; names, place and object are drawn at random.
    """
    if n_prompts <= 0:
        raise SaePaperError(f"n_prompts must be positive, got {n_prompts}")
    if len(set(names)) < 3:
        raise SaePaperError(f"IOI needs at least 3 distinct single-token names, got {len(set(names))}")
    if not places or not objects:
        raise SaePaperError("IOI needs at least one single-token place and one single-token object")
    rng = random.Random(seed)
    prompts = []
    for i in range(n_prompts):
        template_index = (i // 2) % len(templates)
        template = templates[template_index]
        order: Order = "ABBA" if i % 2 == 0 else "BABA"
        io, subject, counterfactual = rng.sample(names, 3)
        place, thing = rng.choice(places), rng.choice(objects)

        # fill is called in this iteration only, so the loop variables it reads are this prompt's.
        def fill(indirect: str) -> str:
            first, second = (indirect, subject) if order == "ABBA" else (subject, indirect)  # noqa: B023
            return template.format(A=first, B=second, S=subject, PLACE=place, OBJECT=thing)  # noqa: B023

        prompts.append(IoiPrompt(fill(io), fill(counterfactual), io, subject, counterfactual, template_index, order))
    return tuple(prompts)


def make_ioi_dataset(
    tokenizer,
    n_prompts: int = 50,
    *,
    seed: int = 0,
    bos_token_id: int = 0,
    templates: tuple[str, ...] = TEMPLATES,
    names: tuple[str, ...] = NAMES,
    places: tuple[str, ...] = PLACES,
    objects: tuple[str, ...] = OBJECTS,
) -> IoiDataset:
    """The fixed IOI test set for a tokenizer: single-token words only, BOS-prefixed, right-padded.

    Raises if a base prompt and its target do not tokenise to the same length, or if a
    name does not appear as the expected single token (so a tokenizer that merges a name
    with its neighbours is caught, not silently mispatched).
    """
    kept_names, dropped_names = single_token_words(tokenizer, names)
    kept_places, dropped_places = single_token_words(tokenizer, places)
    kept_objects, dropped_objects = single_token_words(tokenizer, objects)
    prompts = generate_prompts(n_prompts, names=kept_names, places=kept_places, objects=kept_objects,
                               templates=templates, seed=seed)

    def word_id(word: str) -> int:
        return tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]

    base_ids = tokenizer([p.base for p in prompts], add_special_tokens=False)["input_ids"]
    target_ids = tokenizer([p.target for p in prompts], add_special_tokens=False)["input_ids"]
    for prompt, base, target in zip(prompts, base_ids, target_ids):
        differing = [i for i, (a, b) in enumerate(zip(base, target)) if a != b]
        if len(base) != len(target) or len(differing) != 1:
            raise SaePaperError(f"IOI prompt {prompt.base!r} and its target {prompt.target!r} do not differ in exactly one token")
        if base[differing[0]] != word_id(prompt.io) or target[differing[0]] != word_id(prompt.counterfactual_io):
            raise SaePaperError(f"IOI prompt {prompt.base!r}: the indirect object is not the single token it should be")
    lengths = torch.tensor([len(ids) + 1 for ids in base_ids])
    width = int(lengths.max())

    def pad(rows: list[list[int]]) -> Tensor:
        out = torch.full((len(rows), width), bos_token_id, dtype=torch.long)
        for b, ids in enumerate(rows):
            out[b, 1 : len(ids) + 1] = torch.tensor(ids)
        return out

    return IoiDataset(
        prompts=prompts,
        base_tokens=pad(base_ids),
        target_tokens=pad(target_ids),
        lengths=lengths,
        io_ids=torch.tensor([word_id(p.io) for p in prompts]),
        subject_ids=torch.tensor([word_id(p.subject) for p in prompts]),
        counterfactual_ids=torch.tensor([word_id(p.counterfactual_io) for p in prompts]),
        dropped={"names": dropped_names, "places": dropped_places, "objects": dropped_objects},
    )


def final_logits(logits: Float[Tensor, "batch pos d_vocab"], lengths: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab"]:
    """Each prompt's logits at its own last position ``lengths[b] - 1``."""
    return logits[torch.arange(len(lengths)), lengths - 1]


@dataclass(frozen=True)
class IoiCheck:
    """How well a model does IOI on a dataset (logit differences at the final position)."""

    io_beats_subject: float
    """Share of base prompts where logit(IO) > logit(S)."""
    mean_logit_diff: float
    """Mean of logit(IO) − logit(S) over base prompts."""
    target_beats_subject: float
    """The same on the counterfactual targets: logit(IO') > logit(S)."""
    target_mean_logit_diff: float
    n_prompts: int
    logit_diffs: tuple[float, ...]
    """Per-prompt logit(IO) − logit(S) on the base prompts."""

    def lines(self) -> list[str]:
        n = self.n_prompts
        return [
            f"base prompts:   IO beats S on {round(self.io_beats_subject * n)}/{n}, mean logit(IO) − logit(S) = {self.mean_logit_diff:.2f}",
            f"target prompts: IO' beats S on {round(self.target_beats_subject * n)}/{n}, mean logit(IO') − logit(S) = {self.target_mean_logit_diff:.2f}",
        ]


@torch.no_grad()
def check_model(model, dataset: IoiDataset) -> IoiCheck:
    """IOI performance of a TransformerBridge on the dataset's base and target prompts (two forward passes)."""
    return ioi_check(dataset, final_logits(model(dataset.base_tokens), dataset.lengths),
                     final_logits(model(dataset.target_tokens), dataset.lengths))


def ioi_check(dataset: IoiDataset, base_logits: Float[Tensor, "batch d_vocab"],
              target_logits: Float[Tensor, "batch d_vocab"]) -> IoiCheck:
    """IOI performance from final-position logits already computed (e.g. by a patching setup)."""
    base, target = base_logits.float(), target_logits.float()
    rows = torch.arange(len(dataset))
    diff = base[rows, dataset.io_ids] - base[rows, dataset.subject_ids]
    target_diff = target[rows, dataset.counterfactual_ids] - target[rows, dataset.subject_ids]
    return IoiCheck(
        io_beats_subject=(diff > 0).float().mean().item(),
        mean_logit_diff=diff.mean().item(),
        target_beats_subject=(target_diff > 0).float().mean().item(),
        target_mean_logit_diff=target_diff.mean().item(),
        n_prompts=len(dataset),
        logit_diffs=tuple(diff.tolist()),
    )
