"""A small HTTP server on localhost speaking the part of the OpenAI API the ``openai-compatible`` backend uses.

Not a language model: a real ``http.server`` in a thread, so the client's HTTP, JSON and
logprob parsing are exercised end to end (tests, and trying the backend without a server).

- ``POST /v1/chat/completions``: the explanation is the tokens with the highest activation in
  the prompt's non-zero lines, quoted (``the tokens "'s", "'t"``).
- ``POST /v1/completions`` with ``echo`` and ``logprobs``: the prompt is split into simple
  tokens (words, digits, single characters; tab and newline on their own) with
  ``text_offset``; at a simulation placeholder the top logprobs put 0.9 on "10" when the line's
  token contains one of the explanation's quoted strings, else 0.9 on "0".
- ``malformed``: the number of next replies to break (a reply without ``logprobs``, or not JSON);
  ``requests`` counts the requests served.
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = re.compile(r"\t|\n|[A-Za-z]+|\d|[ ]+|[^\sA-Za-z\d]")
EXPLANATION = re.compile(r"Explanation of neuron \d+ behavior: the main thing this neuron does is find (.*)\n")


class OpenAITestServer:
    """``with OpenAITestServer() as server: backend = OpenAICompatibleBackend("m", server.url)``."""

    def __init__(self):
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
                if self.path.endswith("/chat/completions"):
                    reply = {"choices": [{"message": {"role": "assistant", "content": explain(body["messages"][-1]["content"])}}]}
                elif self.path.endswith("/completions"):
                    reply = {"choices": [{"text": "", "logprobs": complete(body["prompt"], int(body.get("logprobs", 5)))}]}
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


def complete(prompt: str, k: int) -> dict:
    """``logprobs`` of an echoed prompt: tokens, text_offset, top_logprobs (at most ``k`` per position)."""
    matches = list(EXPLANATION.finditer(prompt))
    quoted = re.findall(r'"([^"]+)"', matches[-1].group(1)) if matches else []
    tokens, offsets, tops = [], [], []
    for m in TOKEN.finditer(prompt):
        tokens.append(m.group())
        offsets.append(m.start())
        if m.group() == "unknown" and prompt[m.start() - 1] == "\t":
            line = prompt[prompt.rfind("\n", 0, m.start() - 1) + 1 : m.start() - 1]
            hit = any(q in line for q in quoted)
            top = {"10": math.log(0.9), "0": math.log(0.1)} if hit else {"0": math.log(0.9), "1": math.log(0.1)}
        else:
            top = {m.group(): 0.0}
        tops.append(dict(list(top.items())[:k]))
    return {"tokens": tokens, "text_offset": offsets, "top_logprobs": tops, "token_logprobs": [0.0] * len(tokens)}
