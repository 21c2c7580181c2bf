"""Markdown → Matrix HTML: what render.py writes becomes markup, nothing else does; long texts
split between blocks, tables keep their header, every part fits in an event."""

from __future__ import annotations

import json
import re

import pytest

from bot.model.records import TriageDetail, TriageRow
from bot.render.report import build_report, render_report_md
from bot.render.richtext import MAX_PART_BYTES, inline, markers, split, to_html, to_matrix, to_plain

VERDICT = """<!-- redfix:status cmd-7 -->
🟡 **redfix isolate `mumble`: flake** · cause **load** · 3/3 green alone

| # | run | state | failing tests | log |
|---|---|---|---|---|
| 1 | `rf-1` | 🟢 | `t.py::a\\|b`: x<br>stage `y` failed | [log](https://r.example/rf-1) |

```text
log:3  assert False
```

<details>
<summary>rf-1: <code>docker service ps</code></summary>

```text
svc 1/1
```
</details>

- one
- two

Results table: https://r.example/report

<!-- redfix:verdict {"recipe": "mumble", "outcome": "flake", "cause": "load",
"runs": 3, "green": 3} -->
"""


def test_what_render_writes_becomes_html() -> None:
    h = to_html(VERDICT)
    assert "<strong>redfix isolate <code>mumble</code>: flake</strong>" in h
    assert "<table><thead><tr><th>#</th>" in h
    assert "<td><code>t.py::a|b</code>: x<br>stage <code>y</code> failed</td>" in h
    assert '<a href="https://r.example/rf-1">log</a>' in h
    assert '<pre><code class="language-text">log:3  assert False</code></pre>' in h
    assert "<details><summary>rf-1: <code>docker service ps</code></summary>" in h
    assert "<ul><li>one</li><li>two</li></ul>" in h
    assert '<a href="https://r.example/report">https://r.example/report</a>' in h
    assert "redfix:" not in h  # markers are not shown ...
    assert markers(VERDICT) == {  # ... they travel as content fields
        "org.redfix.key": "cmd-7",
        "org.redfix.verdict": {
            "recipe": "mumble",
            "outcome": "flake",
            "cause": "load",
            "runs": 3,
            "green": 3,
        },
    }


def test_plain_body_reads_like_the_markdown() -> None:
    body = to_plain(VERDICT)
    assert body.startswith("🟡 **redfix isolate `mumble`: flake**")
    assert "<!--" not in body
    assert "<details>" not in body
    assert "x · stage" in body


@pytest.mark.parametrize(
    "evil",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        '<a href="https://x">x</a>',
        "<details open ontoggle=alert(1)>",
        "<code onclick=x>y</code>",
        "&lt;script&gt;",
        "**<b>x</b>**",
    ],
)
def test_nothing_else_becomes_markup(evil: str) -> None:
    for md in (evil, f"| a |\n|---|\n| {evil} |", f"- {evil}", f"> {evil}", f"`{evil}`"):
        h = to_html(md)
        tags = re.findall(r"<\s*([a-zA-Z]+)([^>]*)>", h)
        allowed = {"p", "br", "code", "strong", "table", "thead", "tbody", "tr", "th", "td"}
        allowed |= {"ul", "li", "blockquote", "pre", "a"}
        assert {t for t, _ in tags} <= allowed, h
        assert all(not attrs.strip() for t, attrs in tags if t != "a"), h
        assert "javascript:" not in re.sub(r">[^<]*<", "><", h), h


def test_inline_escapes_and_links() -> None:
    assert inline("a \\| b \\\\ c") == "a | b \\ c"
    assert inline("x < y & z") == "x &lt; y &amp; z"
    assert inline("see https://x.org/a?b=1&c=2.") == (
        'see <a href="https://x.org/a?b=1&amp;c=2">https://x.org/a?b=1&amp;c=2</a>.'
    )


def _report_md(rows: int) -> str:
    triages = [
        TriageRow(
            i,
            f"recipe-{i:03d}",
            None,
            "o/r",
            1,
            None,
            None,
            0.0,
            0.0,
            TriageDetail.from_json(
                {
                    "failure": {"stages": ["custom"], "tests": [f"test_{i}.py::test_x"]},
                    "verdict": {
                        "outcome": "genuine",
                        "cause": "recipe",
                        "green": 0,
                        "runs": 3,
                        "rule": "deploy-never-converged",
                        "evidence": [f"rf-{i} log:12 service {'x' * 80} never converged"],
                        "advice": "a recipe PR",
                    },
                }
            ),
        )
        for i in range(rows)
    ]
    return render_report_md(build_report(triages, [], "https://git.example"), "https://r/report")


def test_a_long_report_is_split_into_tables_that_each_fit_in_an_event() -> None:
    md = _report_md(400)
    parts = to_matrix(md)
    assert len(parts) > 3
    for p in parts:
        assert len(p.body.encode()) + len(p.html.encode()) <= MAX_PART_BYTES
        assert p.html.count("<table>") == p.html.count("</table>")
        if "<table>" in p.html:  # every piece of the table keeps its header
            assert p.html.count("<th>recipe</th>") == p.html.count("<table>")
        edit = {"body": "* " + p.body, "m.new_content": {"body": p.body, "formatted_body": p.html}}
        assert len(json.dumps(edit, ensure_ascii=False).encode()) < 60_000
    shown = "".join(p.html for p in parts)
    assert all(f"<code>recipe-{i:03d}</code>" in shown for i in range(400))


def test_split_keeps_fences_and_details_whole() -> None:
    md = (
        "<details>\n<summary>big</summary>\n\n```text\n"
        + "\n".join(f"line {i} " + "y" * 60 for i in range(400))
        + "\n```\n</details>\n\nafter"
    )
    parts = split(md, 4000)
    assert len(parts) > 3
    for text in parts:
        assert text.count("```") % 2 == 0
        h = to_html(text)
        assert h.count("<details>") == h.count("</details>")
        assert h.count("<pre>") == h.count("</pre>")
    assert parts[-1].endswith("after")
