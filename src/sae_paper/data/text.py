"""Named text sources, tokenised into fixed-length contexts in a seeded order.

The paper trained on the Pile and took autointerp fragments from OpenWebText. Offline we
have (in the shared folder, see its README): English Wikipedia 2015, WebText and Pile
document openings, 20 Newsgroups; and ``python-stdlib-code``, built at run time from this
interpreter's own standard-library sources (for code features such as closing brackets).

Contexts: documents are read in an order fixed by the seed (a buffered shuffle), each is
tokenised without special tokens and cut to at most ``max_document_tokens`` (so a few long
Wikipedia articles cannot fill a whole harvest), documents are joined with
``<|endoftext|>`` (the models' document separator) and the stream is cut into chunks of
``context_length - 1`` tokens, each prefixed with that same token as BOS. So every context
is ``[BOS] + 127 tokens`` at the default length, and position 0 is always BOS.

Splits: document ``i`` of a source is held out (``split="eval"``) when ``i % 20 == 19``;
training uses the rest, so evaluation text never appears in training.

**Which positions count** (:func:`kept_positions`, the one separator-row policy every
notebook uses through the harvest): a context's activation rows are harvested, trained on,
evaluated, spliced and scored at every position except

1. position 0, the BOS;
2. position 1, the first token after BOS;
3. every position holding the separator ``<|endoftext|>`` (a document boundary).

Why: both are *attention sinks*. From about layer 10 on, SmolLM2's residual stream at the
separators and at the first token after BOS has a norm 40-170x the median (measured at
layers 12 and 14: all 8 separators of 32 contexts above 10x, and 5 of 32 first tokens, up to
174x; at layer 3 neither stands out), so 0.1-1 % of the rows would hold most of the variance
and an SAE or PCA fitted on them spends itself there. The rule is by position and token,
not by norm, so it drops the same rows at every layer and site, and a cache harvested for
one layer serves every other.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from sae_paper.data.paths import shared_dir
from sae_paper.errors import SaePaperError

Split = Literal["train", "eval"]
EVAL_EVERY = 20


@dataclass(frozen=True)
class TextSource:
    name: str
    description: str
    files: tuple[str, ...] = ()
    """JSON Lines files under the shared folder's data/ (empty for generated sources)."""


SOURCES: dict[str, TextSource] = {
    source.name: source
    for source in (
        TextSource(
            "enwiki2015",
            "English Wikipedia 2015 articles (CC BY-SA 3.0)",
            tuple(f"enwiki2015/enwiki2015_0{i}.jsonl.gz" for i in range(4)),
        ),
        TextSource("webtext", "OpenAI WebText document openings (<= 450 chars)", ("webtext/webtext.valid.jsonl.gz", "webtext/webtext.test.jsonl.gz")),
        TextSource("pile-openings", "the Pile, document openings", ("webtext/pile.valid.jsonl.gz", "webtext/pile.test.jsonl.gz")),
        TextSource("20news", "20 Newsgroups posts (headers stripped, Subject kept)", ("20news/20news.jsonl.gz",)),
        TextSource("python-stdlib-code", "this Python's standard-library .py files (PSF licence)"),
    )
}


def text_source(name: str) -> TextSource:
    if name not in SOURCES:
        raise SaePaperError(f"unknown text source {name!r}; known sources: {', '.join(SOURCES)}")
    return SOURCES[name]


POLICY_VERSION = 1
"""Bumped whenever :func:`kept_positions` changes which rows it keeps (part of every activation cache's key)."""


def kept_positions(contexts: Tensor, separator_id: int) -> Tensor:
    """``[n_ctx, ctx_len]`` bool: the positions whose activations count (see the module docstring):
    not position 0 (BOS), not position 1, not a separator token."""
    if contexts.ndim != 2:
        raise SaePaperError(f"contexts must be [n_ctx, ctx_len], got shape {tuple(contexts.shape)}")
    keep = contexts != separator_id
    keep[:, :2] = False
    return keep


def iter_documents(name: str, *, split: Split = "train", seed: int = 0, shuffle_buffer: int = 256) -> Iterator[str]:
    """The documents of a source in a seeded order, restricted to one split."""
    import datasets

    source = text_source(name)
    if split not in ("train", "eval"):
        raise SaePaperError(f"unknown split {split!r}; use train or eval")
    if source.files:
        paths = [shared_dir() / "data" / file for file in source.files]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise SaePaperError(f"text source {name} is missing file(s): {', '.join(missing)}")
        datasets.disable_progress_bars()
        stream = datasets.load_dataset("json", data_files=[str(p) for p in paths], split="train", streaming=True)
    else:
        stream = datasets.IterableDataset.from_generator(_stdlib_documents)
    keep_eval = split == "eval"
    stream = stream.filter(lambda _, index: (index % EVAL_EVERY == EVAL_EVERY - 1) == keep_eval, with_indices=True)
    for row in stream.shuffle(seed=seed, buffer_size=shuffle_buffer):
        if row["text"].strip():
            yield row["text"]


def _stdlib_documents() -> Iterator[dict[str, str]]:
    """Each standard-library module's source, in sorted path order (tests and site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
    for path in sorted(root.rglob("*.py")):
        if skip.isdisjoint(path.relative_to(root).parts):
            text = path.read_text(encoding="utf-8", errors="replace")
            yield {"text": text}


def iter_contexts(
    name: str,
    tokenizer,
    *,
    context_length: int,
    bos_token_id: int,
    split: Split = "train",
    seed: int = 0,
    max_document_tokens: int | None = 512,
) -> Iterator[Tensor]:
    """Contexts ``[context_length]`` (int64), each ``[BOS] + context_length - 1`` packed tokens."""
    body = context_length - 1
    pending: list[int] = []
    documents = iter_documents(name, split=split, seed=seed)
    while True:
        batch = [doc for _, doc in zip(range(32), documents)]
        if not batch:
            return
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            pending.extend(ids[:max_document_tokens] if max_document_tokens else ids)
            pending.append(bos_token_id)
        while len(pending) >= body:
            yield torch.tensor([bos_token_id] + pending[:body], dtype=torch.long)
            del pending[:body]


def load_contexts(
    name: str,
    tokenizer,
    *,
    n_contexts: int,
    context_length: int,
    bos_token_id: int,
    split: Split = "train",
    seed: int = 0,
    max_document_tokens: int | None = 512,
) -> Tensor:
    """The first ``n_contexts`` of :func:`iter_contexts` as one ``[n_contexts, context_length]`` tensor."""
    stream = iter_contexts(
        name, tokenizer, context_length=context_length, bos_token_id=bos_token_id,
        split=split, seed=seed, max_document_tokens=max_document_tokens,
    )
    contexts = [context for _, context in zip(range(n_contexts), stream)]
    if len(contexts) < n_contexts:
        raise SaePaperError(
            f"text source {name} ({split} split) has only {len(contexts)} contexts of {context_length} tokens; "
            f"{n_contexts} were asked for"
        )
    return torch.stack(contexts)
