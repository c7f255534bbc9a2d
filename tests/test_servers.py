"""The ``openai-compatible`` backend against the position conventions real servers use (``docs/servers.md``).

Offline: a real reply of llama-cpp-python 0.3.36's server (``data/llama_cpp_server_echo.json``), the
project's test server in each convention, vLLM's reply shape. Online: llama-cpp-python's own server
with SmolLM2-135M (the ``llama_server`` fixture), a few short prompts, so that these run in CI.
"""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest

from sae_paper.analysis.autointerp import ActivationRecord, BackendFailure, Cached, CallCache, OpenAICompatibleBackend
from sae_paper.analysis.autointerp.backends import expected_value, simulate_body, simulate_prefix
from sae_paper.analysis.autointerp.classify import Example
from sae_paper.analysis.autointerp.openai_compatible import (
    CHAT_ONLY,
    PROBE,
    Refused,
    _placeholder_offsets,
    agreement,
    convention_of,
    echo_logprobs,
)
from sae_paper.analysis.autointerp.testserver import OpenAITestServer, complete

FIXTURE = json.loads((Path(__file__).parent / "data" / "llama_cpp_server_echo.json").read_text())
COUNTING = FIXTURE["simulation"]["prompt"]
"""a 1, b 2, ... f 6, then g, h, i as placeholders: the first placeholder's value is plainly 7."""


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


class Replaying(OpenAICompatibleBackend):
    """The backend with its ``/completions`` answered from recorded replies (by prompt)."""

    def __init__(self, replies: dict[str, dict], model: str = "recorded"):
        super().__init__(model, "http://recorded.invalid/v1")
        self.replies, self.asked = replies, []

    def _complete(self, prompt: str) -> dict:
        self.asked.append(prompt)
        return self.replies[prompt]


@pytest.fixture(autouse=True)
def _fresh_probes(monkeypatch):
    """Every test probes its servers afresh (the backend keeps each server's convention for the process)."""
    monkeypatch.setattr(OpenAICompatibleBackend, "_checked", {})


# --------------------------------------------------------------------------------------
# The recorded llama-cpp-python reply
# --------------------------------------------------------------------------------------


def test_recorded_llama_cpp_reply_is_shifted_by_one_and_read_one_entry_earlier():
    probe = echo_logprobs(FIXTURE["probe"]["reply"], PROBE)
    assert agreement(probe, 0) < 0.1 and agreement(probe, 1) > 0.9  # entry i holds token i+1's distribution
    assert convention_of(probe) == "shifted-by-one"

    backend = Replaying({PROBE: FIXTURE["probe"]["reply"], COUNTING: FIXTURE["simulation"]["reply"]})
    predictions = backend.simulate(COUNTING, 3)
    echo = echo_logprobs(FIXTURE["simulation"]["reply"], COUNTING)
    first = echo.offsets.index(_placeholder_offsets(COUNTING)[0])
    assert echo.tokens[first] == "unknown" and max(echo.tops[first - 1], key=echo.tops[first - 1].get) == "7"
    assert predictions[0] == pytest.approx(expected_value(echo.tops[first - 1])) and 6 < predictions[0] < 8
    assert backend.settings()["convention"] == "shifted-by-one" and backend.asked == [PROBE, COUNTING]


def test_test_server_replies_have_the_real_servers_fields_and_layout():
    real = FIXTURE["probe"]["reply"]
    for convention in ("openai", "shifted-by-one"):
        with OpenAITestServer(convention) as server:
            reply = _post(server.url + "/completions", {"model": "m", "prompt": PROBE, "echo": True, "logprobs": 5,
                                                        "max_tokens": 1})
        assert set(real) >= set(reply) >= {"object", "model", "choices"}
        assert set(reply["choices"][0]) == set(real["choices"][0])
        logprobs, seen = reply["choices"][0]["logprobs"], real["choices"][0]["logprobs"]
        assert set(logprobs) == set(seen) and logprobs["top_logprobs"][0] is None is seen["top_logprobs"][0]
        # every entry holds its own token's logprob too, as the real server's do
        assert all(t in top for t, top in zip(logprobs["tokens"][1:], logprobs["top_logprobs"][1:]))
    tokens = complete(PROBE, 5, "shifted-by-one")["tokens"]
    assert tokens[-1] == "2" and len(tokens) == len(complete(PROBE, 5, "openai")["tokens"]) - 1  # no completion entry


# --------------------------------------------------------------------------------------
# The test server in each convention
# --------------------------------------------------------------------------------------


def test_both_conventions_give_identical_simulations():
    tokens = ["I", " don", "'t", " know", ",", " it", "'s", " fine"]
    prompt = simulate_prefix('the tokens "\'t", "\'s"') + simulate_body(tokens)[0]
    predictions = {}
    for convention in ("openai", "shifted-by-one"):
        with OpenAITestServer(convention) as server:
            backend = OpenAICompatibleBackend("test-model", server.url)
            predictions[convention] = backend.simulate(prompt, len(tokens))
            assert backend.convention == convention and backend.settings()["convention"] == convention
    expected = [10 * 0.9 if t in ("'t", "'s") else 0.1 for t in tokens]  # 0.9 on "10" at a hit, else 0.1 on "1"
    assert predictions["openai"] == predictions["shifted-by-one"] == pytest.approx(expected)


def test_chat_only_server_is_refused_in_one_line_once_and_still_explains():
    with OpenAITestServer("chat-only") as server:
        backend = OpenAICompatibleBackend("gpt-x", server.url)
        prompt = simulate_prefix("years") + simulate_body(["In", " 1999"])[0]
        for _ in range(2):
            with pytest.raises(BackendFailure, match="use scoring=detection or scoring=fuzzing") as failure:
                backend.simulate(prompt, 2)
            assert "\n" not in str(failure.value) and str(failure.value).startswith(f"{server.url} (model gpt-x)")
        assert server.requests == 1 and backend.settings()["convention"] == "refused"  # probed once, refusal kept
        assert backend.explain(backend.explain_request([ActivationRecord(("a", " b"), (0, 10))])) == 'the tokens "b"'


def test_a_server_without_echo_logprobs_or_at_no_offset_is_refused():
    probe = FIXTURE["probe"]["reply"]
    without = {**probe, "choices": [{**probe["choices"][0], "logprobs": None}]}
    with pytest.raises(BackendFailure, match=CHAT_ONLY):
        Replaying({PROBE: without}).check_convention()
    scrambled = json.loads(json.dumps(probe))
    logprobs = scrambled["choices"][0]["logprobs"]
    logprobs["top_logprobs"] = [None] + [{"x": 0.0} for _ in logprobs["tokens"][1:]]
    with pytest.raises(Refused, match=r"recorded.invalid/v1 \(model scrambled\): echo logprobs match the prompt at "
                                      r"no offset .*cannot simulate$"):
        Replaying({PROBE: scrambled}, "scrambled").check_convention()


def test_vllm_reply_shape_none_entries_bos_and_prompt_logprobs():
    """vLLM (not tried here; its documented shape): OpenAI's convention, a BOS token decoded into the echo and
    counted in ``text_offset``, and ``prompt_logprobs`` (token id -> logprob, decoded token) beside them."""
    plain = complete(PROBE, 5, "openai")
    bos = "<|begin_of_text|>"
    logprobs = {"tokens": [bos] + plain["tokens"], "text_offset": [0] + [o + len(bos) for o in plain["text_offset"]],
                "token_logprobs": [None] + plain["token_logprobs"], "top_logprobs": None}
    prompt_logprobs = [None, None] + [{str(i): {"logprob": v, "rank": 1, "decoded_token": t} for i, (t, v) in
                                      enumerate(top.items())} for top in plain["top_logprobs"][1:]]
    reply = {"choices": [{"text": PROBE, "logprobs": logprobs, "prompt_logprobs": prompt_logprobs}]}
    echo = echo_logprobs(reply, PROBE)
    assert echo.offsets[1:] == plain["text_offset"] and echo.tops[2] == plain["top_logprobs"][1]
    assert convention_of(echo) == "openai"


# --------------------------------------------------------------------------------------
# llama-cpp-python's own server with SmolLM2-135M
# --------------------------------------------------------------------------------------


def test_probe_finds_the_shift_of_the_real_server(llama_server):
    backend = OpenAICompatibleBackend("smollm2", llama_server)
    assert backend.check_convention() == "shifted-by-one" and backend.settings()["convention"] == "shifted-by-one"


def test_real_server_explains_and_simulates_at_the_placeholders(llama_server):
    backend = OpenAICompatibleBackend("smollm2", llama_server)
    explanation = backend.explain(backend.explain_request([ActivationRecord(("I", " don", "'t", " know"), (0, 0, 10, 0))]))
    assert isinstance(explanation, str) and explanation.strip()

    predictions = backend.simulate(COUNTING, 3)
    assert len(predictions) == 3 and max(predictions) - min(predictions) > 1  # not flat
    assert 5 < predictions[0] < 9  # after a 1 .. f 6, g's value is plainly 7
    # Each prediction is the model's own next-token distribution at the placeholder: the same prompt cut there,
    # completed without echo (llama-cpp-python places a generated token's logprobs right).
    for offset, prediction in zip(_placeholder_offsets(COUNTING), predictions):
        reply = _post(llama_server + "/completions", {"prompt": COUNTING[:offset], "max_tokens": 1, "temperature": 0,
                                                      "logprobs": backend.top_logprobs})
        top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
        assert prediction == pytest.approx(expected_value(top), abs=0.05)
    assert all(math.isfinite(p) for p in predictions)


# --------------------------------------------------------------------------------------
# Detection and fuzzing through /chat/completions
# --------------------------------------------------------------------------------------

EXAMPLES = (Example(("I", " don", "'t", " know")), Example(("The", " cat", " sat")), Example(("it", "'s"), (False, True)),
            Example(("it", "'s"), (True, False)))


def test_classify_through_the_test_server_even_a_chat_only_one():
    for convention in ("openai", "chat-only"):  # detection and fuzzing need no logprobs
        with OpenAITestServer(convention) as server:
            backend = Cached(OpenAICompatibleBackend("test-model", server.url), None)
            assert backend.classify("detection", 'the tokens "\'t", "\'s"', EXAMPLES) == [1, 0, 1, 1]
            assert backend.classify("fuzzing", 'the tokens "\'t", "\'s"', EXAMPLES) == [0, 0, 1, 0]
            server.malformed = 2  # a reply that is not JSON: a failure, not answers
            with pytest.raises(BackendFailure, match="not JSON"):
                backend.classify("detection", "anything", EXAMPLES)


def test_classify_through_the_real_server_gives_n_answers_or_a_counted_failure(llama_server, tmp_path):
    """SmolLM2-135M is weak: what is asserted is the shape of what comes back, not its quality."""
    backend = Cached(OpenAICompatibleBackend("smollm2", llama_server), CallCache(tmp_path / "calls.sqlite"))
    for task in ("detection", "fuzzing"):
        try:
            answers = backend.classify(task, 'apostrophes, like "\'t" and "\'s"', EXAMPLES)
        except BackendFailure as failure:
            assert "\n" not in str(failure) and ("answers" in str(failure) or "list" in str(failure)), failure
        else:
            assert len(answers) == len(EXAMPLES) and all(0 <= a <= 1 for a in answers)


# --------------------------------------------------------------------------------------
# Notebook 02 end to end through the real server
# --------------------------------------------------------------------------------------

REAL_SERVER_OVERRIDES = (  # the smoke profile cut to what a 135M model on 2 cores answers in minutes
    "02_autointerp.methods=[sae, neurons]", "02_autointerp.layers=[2]", "02_autointerp.main_layer=2",
    "02_autointerp.table1_layer=2", "02_autointerp.table1_features=1", "02_autointerp.fig8_ratios=[2.0]",
    "02_autointerp.mlp_layer=null", "02_autointerp.n_features=1", "02_autointerp.n_seeds=1",
    "02_autointerp.fragment_budgets=[60]", "02_autointerp.n_explain=2", "02_autointerp.n_simulate_top=1",
    "02_autointerp.n_random=1", "02_autointerp.explainer=openai-compatible", "02_autointerp.simulator=openai-compatible",
    "02_autointerp.explainer_model=smollm2", "02_autointerp.simulator_model=smollm2",
)


@pytest.mark.slow  # 3 min 06 s measured here (SmolLM2 simulations ~0.1 s per prompt token); over CI's ~90 s for a test
def test_notebook_02_on_the_smoke_profile_through_the_real_server(llama_server, tmp_path):
    from test_book import book_copy

    from sae_paper.book.runner import BookLayout, run_book
    from sae_paper.data.paths import repo_root

    root = repo_root()
    book = book_copy(tmp_path)
    result = run_book("smoke", [*REAL_SERVER_OVERRIDES, f"02_autointerp.base_url={llama_server}"], ["02_autointerp"],
                      layout=BookLayout(root / "notebooks", book, root / "profiles"), build=False, reuse=False,
                      log=print)
    print(f"notebook 02 through the real server: {result.seconds}")
    assert result.notebooks == ["02_autointerp"] and not result.reused
    assert json.loads((book / "generated" / "claims" / "02_autointerp.json").read_text())["records"]
    scored = json.loads((book / "generated" / "feature_records" / "02_autointerp.json").read_text())
    assert "openai-compatible" in json.dumps(scored)  # scored by the server, not the stand-in
