"""Text that is safe inside the Markdown tables the notebooks show.

A table cell ends at an unescaped ``|``, also inside a code span (GitHub-flavoured Markdown,
which the book renders notebook outputs with), and a code span ends at the first run of
backticks as long as its fence: a token such as ``|`` or a backtick would break the row or
swallow the cells after it. Tokens are arbitrary text, so every token shown in a table
goes through :func:`code_span`.
"""

from __future__ import annotations

import re


def readable(text: str) -> str:
    """``text`` with U+FFFD written as the escape ``\\ufffd``.

    Text made from single decoded tokens (the token-list scorer's explanations) holds U+FFFD
    where a token is part of a UTF-8 character; its bytes are gone by then, and a bare
    replacement character reads as a rendering fault. Token ids still at hand show their
    bytes instead (:func:`sae_paper.analysis.token_activations.token_display`).
    """
    return str(text).replace("\ufffd", "\\ufffd")


def table_cell(text: str) -> str:
    """``text`` on one line with every ``|`` escaped: safe as one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code_span(text: str) -> str:
    """``text`` as an inline code span that survives any backticks or pipes in it, for a table cell.

    The fence is one backtick longer than the longest run inside (CommonMark's rule), padded with
    a space where the text starts or ends with a backtick; ``|`` is escaped for the table.
    Whitespace shows as ``\\n`` and ``\\t`` so the cell stays on one line.
    """
    shown = readable(text).replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    runs = [len(run) for run in re.findall(r"`+", shown)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") or not shown.strip() else ""
    return f"{fence}{pad}{shown}{pad}{fence}".replace("|", "\\|")
