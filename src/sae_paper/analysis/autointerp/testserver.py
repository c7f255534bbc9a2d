"""A small HTTP server on localhost speaking the part of the OpenAI API the ``openai-compatible`` backend uses.

Not a language model: a real ``http.server`` in a thread, so the client's HTTP, JSON and
logprob parsing are exercised end to end (tests, and trying the backend without a server).

- ``POST /v1/chat/completions``: the explanation is the tokens with the highest activation in
  the prompt's non-zero lines, quoted (``the tokens "'s", "'t"``); a detection or fuzzing prompt
  (:func:`~sae_paper.analysis.autointerp.classify.classify_prompt`) is answered with a list: 1 for
  an example that contains one of the explanation's quoted strings (detection), or whose every
  marked token contains one (fuzzing), else 0.
- ``POST /v1/completions`` with ``echo`` and ``logprobs``: the prompt is split into simple
  tokens (words, digits, single characters; tab and newline on their own) with
  ``text_offset``; the "model" puts all its mass on each next token of the prompt, except at a
  simulation placeholder, where it puts 0.9 on "10" when the line's token contains one of the
  explanation's quoted strings, else 0.9 on "0".
- ``convention``: where a token's distribution sits in the echo, as real servers were seen to put
  it (``tests/data/llama_cpp_server_echo.json``, ``docs/servers.md``): ``"openai"`` (OpenAI, vLLM:
  entry i is token i's, entry 0 None, the completion's token appended), ``"shifted-by-one"``
  (llama-cpp-python 0.3.36: entry i is token i+1's, holding token i's logprob as well; entry 0
  None; no entry for the completion) or ``"chat-only"`` (``/completions`` answers 404, as OpenAI's
  API does for chat models).
- ``malformed``: the number of next replies to break (a reply without ``logprobs``, or not JSON);
  ``requests`` counts the requests served.
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sae_paper.analysis.autointerp.classify import MARK_CLOSE, MARK_OPEN
from sae_paper.errors import SaePaperError

TOKEN = re.compile(r"\t|\n|[A-Za-z]+|\d|[ ]+|[^\sA-Za-z\d]")
CONVENTIONS = ("openai", "shifted-by-one", "chat-only")
CLASSIFY_ASKS = "Answer with only a list of"
EXPLANATION = re.compile(r"Explanation of neuron \d+ behavior: the main thing this neuron does is find (.*)\n")


class OpenAITestServer:
    """``with OpenAITestServer() as server: backend = OpenAICompatibleBackend("m", server.url)``; ``convention``:
    one of :data:`CONVENTIONS`."""

    def __init__(self, convention: str = "openai"):
        if convention not in CONVENTIONS:
            raise SaePaperError(f"unknown test-server convention {convention!r}; known: {', '.join(CONVENTIONS)}")
        self.convention = convention
        self.malformed = 0
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "OpenAITestServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                owner.requests += 1
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                model = body.get("model", "test-model")
                if self.path.endswith("/chat/completions"):
                    prompt = body["messages"][-1]["content"]
                    answer = classify(prompt) if CLASSIFY_ASKS in prompt else explain(prompt)
                    message = {"role": "assistant", "content": answer}
                    reply = {"object": "chat.completion", "model": model,
                             "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]}
                elif self.path.endswith("/completions") and owner.convention != "chat-only":
                    logprobs = complete(body["prompt"], int(body.get("logprobs", 5)), owner.convention)
                    reply = {"object": "text_completion", "model": model,
                             "choices": [{"text": body["prompt"] + "\n", "index": 0, "logprobs": logprobs,
                                          "finish_reason": "length"}]}
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(reply).encode()
                if owner.malformed > 0:
                    owner.malformed -= 1
                    payload = b'{"choices": [{"text": ""}]}' if owner.malformed % 2 == 0 else b"<html>bad gateway</html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def explain(prompt: str) -> str:
    """The tokens with the highest activation in the non-zero part of an explainer prompt."""
    part = prompt.split("all zeros filtered out:", 1)[-1]
    pairs = re.findall(r"^(.*)\t(\d+)$", part, flags=re.M)
    if not pairs:
        return "nothing in particular"
    best = max(int(a) for _, a in pairs)
    tokens = sorted({t.strip() for t, a in pairs if int(a) == best and t.strip()})
    return "the tokens " + ", ".join(f'"{t}"' for t in tokens)


def classify(prompt: str) -> str:
    """The answers to a detection or fuzzing prompt, by the explanation's quoted strings."""
    explanation = re.search(r"^Explanation: (.*)$", prompt, flags=re.M)
    quoted = re.findall(r'"([^"]+)"', explanation.group(1)) if explanation else []
    answers = []
    body = prompt[prompt.find("Example 1: ") : prompt.rfind("\n\n" + CLASSIFY_ASKS)]
    for text in re.split(r"(?:^|\n)Example \d+: ", body)[1:]:  # a fragment's text may span lines
        marked = re.findall(re.escape(MARK_OPEN) + "(.*?)" + re.escape(MARK_CLOSE), text)
        if "[[double brackets]]" in prompt:
            answers.append(int(bool(marked) and all(any(q in m for q in quoted) for m in marked)))
        else:
            answers.append(int(any(q in text for q in quoted)))
    return json.dumps(answers)


def complete(prompt: str, k: int, convention: str = "openai") -> dict:
    """``logprobs`` of an echoed prompt in ``convention``'s layout: tokens, text_offset, token_logprobs and
    top_logprobs (the ``k`` most likely candidates and the entry's own token, as real servers give them)."""
    matches = list(EXPLANATION.finditer(prompt))
    quoted = re.findall(r'"([^"]+)"', matches[-1].group(1)) if matches else []
    found = list(TOKEN.finditer(prompt))
    tokens, offsets = [m.group() for m in found], [m.start() for m in found]
    # the distribution the "model" gives for each token, then for the one after the prompt
    dists = []
    for m in found:
        if m.group() == "unknown" and prompt[m.start() - 1] == "\t":
            line = prompt[prompt.rfind("\n", 0, m.start() - 1) + 1 : m.start() - 1]
            hit = any(q in line for q in quoted)
            dists.append({"10": math.log(0.9), "0": math.log(0.1)} if hit else {"0": math.log(0.9), "1": math.log(0.1)})
        else:
            dists.append({m.group(): math.log(0.99)})
    dists.append({"\n": math.log(0.99)})
    if convention == "shifted-by-one":
        entries = [None] + dists[2:]  # entry i holds token i+1's distribution; token 1's is lost
    else:
        entries = [None] + dists[1:-1]
        tokens, offsets, entries = tokens + ["\n"], offsets + [len(prompt)], entries + [dists[-1]]

    def top(entry: dict | None, token: str) -> dict | None:
        if entry is None:
            return None
        best = dict(sorted(entry.items(), key=lambda item: -item[1])[:k])
        return {**best, token: entry.get(token, math.log(1e-6))}

    tops = [top(entry, token) for entry, token in zip(entries, tokens)]
    return {"text_offset": offsets, "token_logprobs": [t[token] if t else None for t, token in zip(tops, tokens)],
            "tokens": tokens, "top_logprobs": tops}
