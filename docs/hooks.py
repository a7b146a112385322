"""MkDocs hooks: the gallery's figures in the site, and the docstrings' Sphinx markup shown.

* ``on_files`` adds ``figures/*.png`` (written by ``ctrnn-dyn reproduce``) to the site, so the
  reproduction pages show the committed figures without a copy under ``docs/``.
* ``on_page_content`` turns the reStructuredText the docstrings use into what the site shows:
  ``:class:`~a.b.C``` and the other cross-reference roles become code (``C``), ``:math:`x```
  inline maths and a ``.. math::`` block display maths (typeset by MathJax), a simple table
  (``===`` borders) a table, and the ``::`` that introduces a literal block a colon.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]

_ROLE = re.compile(
    r":(?:class|func|meth|attr|mod|data|exc|obj|const|py:\w+):<code>(~?)([^<]*)</code>"
)
_MATH = re.compile(r":math:<code>([^<]*)</code>")
_MATH_BLOCK = re.compile(
    r"<p>\.\. math::\s*(.*?)</p>\s*"
    r"(?:<div class=\"highlight\"><pre><span></span><code>|<pre><code>)"
    r"(.*?)</code></pre>(?:</div>)?",
    re.S,
)
_DIRECTIVE = re.compile(r"<p>\.\. (?:code-block|code)::[^<]*</p>")
_SIMPLE_TABLE = re.compile(r"<p>(=+(?: +=+)+)\n(.*?)\n\1</p>", re.S)
_LITERAL_INTRO = re.compile(r"::</p>")


def on_files(files, config):
    for png in sorted((ROOT / "figures").glob("*.png")):
        files.append(File(f"figures/{png.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def _role(match: re.Match) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def _math_block(match: re.Match) -> str:
    inline, body = match.groups()
    tex = html.unescape(re.sub(r"<[^>]+>", "", inline + "\n" + body)).strip()
    return f'<div class="arithmatex">\\[{html.escape(tex, quote=False)}\\]</div>'


def _simple_table(match: re.Match) -> str:
    """A reStructuredText simple table (``===`` borders, one header row) as an HTML table."""
    border, body = match.groups()
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    lines = [line for line in body.split("\n") if line.strip()]
    if len(lines) < 2 or lines[1] != border:
        return match.group(0)

    def cells(line: str) -> list[str]:
        edges = [a for a, _ in spans[1:]] + [None]
        return [line[a:b].strip() for (a, _), b in zip(spans, edges, strict=True)]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(line)) + "</tr>"
                   for line in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def on_page_content(content, page, config, files):
    content = _SIMPLE_TABLE.sub(_simple_table, content)
    content = _ROLE.sub(_role, content)
    content = _MATH.sub(lambda m: f'<span class="arithmatex">\\({m.group(1)}\\)</span>', content)
    content = _MATH_BLOCK.sub(_math_block, content)
    content = _DIRECTIVE.sub("", content)
    return _LITERAL_INTRO.sub(":</p>", content)
