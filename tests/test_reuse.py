"""A rebuild executes only the notebooks whose inputs changed (:mod:`sae_paper.book.reuse`).

Two tiny notebooks, each recording a claim file with a random nonce, so a re-execution cannot
pass for a reuse: a reused notebook's records come back byte for byte, an executed one's differ.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sae_paper.book.reuse import KEEP, ReuseCache, browser_key, notebook_key, package_hash
from sae_paper.book.runner import BookLayout, run_book

NOTEBOOK = textwrap.dedent('''\
    # ---
    # jupyter:
    #   kernelspec:
    #     display_name: Python 3
    #     language: python
    #     name: python3
    # ---

    # %% tags=["parameters"]
    profile = "notebook"
    value = 1

    # %%
    import json, uuid
    from sae_paper.data.paths import book_output_dir
    (book_output_dir("claims") / "{name}.json").write_text(json.dumps({{"records": [], "value": value, "nonce": uuid.uuid4().hex}}))
    ''')


@pytest.fixture
def two_notebooks(tmp_path) -> BookLayout:
    notebooks, profiles, book = tmp_path / "notebooks", tmp_path / "profiles", tmp_path / "book"
    for folder in (notebooks, profiles, book):
        folder.mkdir()
    for name in ("aa", "bb"):
        (notebooks / f"{name}.py").write_text(NOTEBOOK.format(name=name))
    (profiles / "tiny.yaml").write_text("aa:\n  value: 1\nbb:\n  value: 2\n")
    return BookLayout(notebooks, book, profiles)


def claims(layout: BookLayout) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((layout.book_dir / "generated" / "claims").glob("*.json"))}


def test_an_unchanged_notebook_is_reused_and_a_changed_input_reexecutes_only_its_notebook(two_notebooks):
    layout, lines = two_notebooks, []
    first = run_book("tiny", layout=layout, build=False, log=lines.append)
    assert first.reused == [] and set(first.seconds) == {"aa", "bb"}
    before = claims(layout)
    assert json.loads(before["bb.json"])["value"] == 2

    again = run_book("tiny", layout=layout, build=False, log=lines.append)
    assert again.reused == ["aa", "bb"] and again.seconds == {}
    assert claims(layout) == before  # byte for byte: reinstated, not executed again
    assert "notebooks executed: none; reused: aa, bb" in lines
    assert any(line.startswith("feature browser: reused") for line in lines)

    changed = run_book("tiny", ["bb.value=3"], layout=layout, build=False, log=lines.append)  # one parameter
    assert changed.reused == ["aa"] and set(changed.seconds) == {"bb"}
    after = claims(layout)
    assert after["aa.json"] == before["aa.json"] and json.loads(after["bb.json"])["value"] == 3

    source = layout.notebooks_dir / "aa.py"  # one notebook's source: a sentence added
    source.write_text(source.read_text() + "\n# %% [markdown]\n# One more sentence.\n")
    edited = run_book("tiny", layout=layout, build=False, log=lines.append)
    assert edited.reused == ["bb"] and set(edited.seconds) == {"aa"}
    assert claims(layout)["aa.json"] != before["aa.json"]
    assert claims(layout)["bb.json"] == before["bb.json"]  # value 2 again: the entry stored by the first run

    forced = run_book("tiny", layout=layout, build=False, log=lines.append, reuse=False)
    assert forced.reused == [] and set(forced.seconds) == {"aa", "bb"}


def test_the_keys_follow_their_inputs(tmp_path):
    key = notebook_key("source", {"a": 1}, "smoke")
    assert key == notebook_key("source", {"a": 1}, "smoke")
    assert len({key, notebook_key("source.", {"a": 1}, "smoke"), notebook_key("source", {"a": 2}, "smoke"),
                notebook_key("source", {"a": 1}, "default")}) == 4
    assert len(package_hash()) == 64

    records, big = tmp_path / "02.json", tmp_path / "sae.safetensors"
    records.write_text("{}")
    big.write_bytes(b"x")
    browser = browser_key([records], [big])
    assert browser == browser_key([records], [big]) and browser != browser_key([records], [big, tmp_path / "missing"])
    records.write_text('{"a": 1}')
    assert browser_key([records], [big]) != browser


def test_a_notebook_keeps_its_most_recent_entries(tmp_path):
    source = tmp_path / "out"
    (source / "claims").mkdir(parents=True)
    store = ReuseCache("book-notebooks")
    for n in range(KEEP + 2):
        (source / "claims" / "nb.json").write_text(str(n))
        store.store("nb", f"key{n}", source, ["claims/nb.json", "nb.ipynb"])  # no nb.ipynb: skipped
    kept = sorted(p.name for p in (store.root / "nb").iterdir())
    assert len(kept) == KEEP and "key0" not in kept
    target = tmp_path / "back"
    assert store.restore("nb", "key0", target) is None
    assert store.restore("nb", f"key{KEEP + 1}", target)["files"] == ["claims/nb.json"]
    assert (target / "claims" / "nb.json").read_text() == str(KEEP + 1)
    assert not list(Path(store.root / "nb").glob("*.tmp"))
    (store.root / "nb" / f"key{KEEP + 1}" / "files" / "claims" / "nb.json").unlink()  # an entry missing a file
    assert store.restore("nb", f"key{KEEP + 1}", tmp_path / "again") is None
