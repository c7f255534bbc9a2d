"""``docs/bad-inputs.md`` against the tests: each row names a test that exists and whose file holds
the quoted error text, and each fixed ``match=`` text the tests give a user-facing error is listed."""

from __future__ import annotations

import ast
import re

from sae_paper.data.paths import repo_root

ROOT = repo_root()
DOC = ROOT / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\| (?P<area>[^|]+) \| (?P<input>[^|]+) \| `(?P<error>[^`]+)` \| `(?P<file>tests/[\w.]+)::(?P<test>\w+)` \|$")
USER_ERRORS = {"SaePaperError", "BookError", "BackendFailure", "Exception"}
"""Exceptions a user can meet (a ValueError in the tests is a developer's mistake, e.g. a duplicate registration)."""


def plain(text: str) -> str:
    """Text without regex escapes, so ``different settings \\(d\\)`` reads as it prints."""
    return text.replace("\\", "")


def rows() -> list[dict[str, str]]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "`tests/" in line]
    parsed = [ROW.match(line) for line in lines]
    bad = [line for line, match in zip(lines, parsed) if match is None]
    assert not bad, f"rows of {DOC.name} not in the form | area | input | `error` | `tests/file.py::test` |: {bad}"
    return [match.groupdict() for match in parsed]


def test_every_row_names_a_test_whose_file_holds_the_error_text():
    listed = rows()
    assert len(listed) >= 40
    for row in listed:
        source = (ROOT / row["file"]).read_text()
        assert re.search(rf"^def {row['test']}\(", source, re.M), f"{row['file']} has no test {row['test']}"
        assert plain(row["error"]) in plain(source), f"{row['file']} never mentions {row['error']!r}"


def test_every_fixed_error_text_the_tests_match_is_listed():
    listed = rows()
    missing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(function, ast.FunctionDef) and function.name.startswith("test_")):
                continue
            for call in ast.walk(function):
                if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "pytest.raises" and call.args
                        and ast.unparse(call.args[0]) in USER_ERRORS):
                    continue
                match = next((k.value for k in call.keywords if k.arg == "match"), None)
                if not (isinstance(match, ast.Constant) and isinstance(match.value, str)):
                    continue  # no text, or one built at run time: the row's own check covers it
                text = plain(match.value)
                if not any(row["test"] == function.name and (text in plain(row["error"]) or plain(row["error"]) in text)
                           for row in listed):
                    missing.append(f"{path.name}::{function.name}: {text!r}")
    assert not missing, f"bad inputs the tests try but {DOC.name} does not list: {missing}"
