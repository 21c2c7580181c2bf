"""docs/architecture.md and the README's map match the tree: no module missing, no path stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PATH_RE = re.compile(r"`((?:bot|handlers)/[A-Za-z0-9_./]*)`")
SENTENCE_END = re.compile(r"(?<=[.;])\s+(?=[A-Z`(])")


def modules() -> list[str]:
    """Every module of bot/ and handlers/, as a path from the repository root."""
    found = [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]
    return sorted(str(p.relative_to(ROOT)) for p in found)


def summary(path: str) -> str:
    """A module's job: the first sentence of its docstring (which may wrap over lines)."""
    doc = ast.get_docstring(ast.parse((ROOT / path).read_text()))
    if not doc:
        return ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return SENTENCE_END.split(paragraph, maxsplit=1)[0]


def index_lines(text: str) -> list[str]:
    start = text.index("<!-- module-index:start -->")
    end = text.index("<!-- module-index:end -->")
    return [line for line in text[start:end].splitlines()[1:] if line.strip()]


def stale_paths(text: str) -> list[str]:
    """Paths named in `text` that are not in the tree (a folder ends with /)."""
    out = []
    for path in PATH_RE.findall(text):
        clean = path.rstrip(".,")
        if not (ROOT / clean).exists():
            out.append(clean)
    return out


def test_every_module_has_a_docstring_that_says_its_job() -> None:
    missing = [p for p in modules() if not p.endswith("__main__.py") and not summary(p)]
    assert missing == []


def test_the_module_index_is_the_tree() -> None:
    """Each module once, in path order, with its docstring's first line."""
    listed = index_lines(DOC.read_text())
    expected = [f"- `{p}` — {summary(p)}" for p in modules() if summary(p)]
    assert listed == expected, "regenerate with: python -m tests.test_architecture_doc"


def test_no_path_in_the_docs_is_stale() -> None:
    for doc in (DOC, ROOT / "README.md"):
        assert stale_paths(doc.read_text()) == [], doc.name


def test_the_stale_path_check_sees_a_stale_path() -> None:
    """Positive control: a path that does not exist is reported, one that does is not."""
    text = "see `bot/core/dispatch.py` and `bot/nowhere/gone.py`, and `bot/render/`"
    assert stale_paths(text) == ["bot/nowhere/gone.py"]


def regenerate() -> None:
    """Rewrite the index between its markers from the tree (run after adding a module)."""
    text = DOC.read_text()
    start = text.index("<!-- module-index:start -->") + len("<!-- module-index:start -->")
    end = text.index("<!-- module-index:end -->")
    lines = [f"- `{p}` — {summary(p)}" for p in modules() if summary(p)]
    DOC.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:])


if __name__ == "__main__":
    regenerate()
