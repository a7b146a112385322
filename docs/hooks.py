"""MkDocs hooks: the gallery's figures in the site, and the docstrings' Sphinx markup shown.

* ``on_files`` adds ``figures/*.png`` (written by ``ctrnn-dyn reproduce``) to the site, so the
  reproduction pages show the committed figures without a copy under ``docs/``.
* ``on_page_content`` turns the reStructuredText the docstrings use into what the site shows:
  ``:class:`~a.b.C``` and the other cross-reference roles become code (``C``), ``:math:`x```
  inline maths and a ``.. math::`` block display maths (typeset by MathJax), and the ``::`` that
  introduces a literal block a colon.
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


def on_page_content(content, page, config, files):
    content = _ROLE.sub(_role, content)
    content = _MATH.sub(lambda m: f'<span class="arithmatex">\\({m.group(1)}\\)</span>', content)
    content = _MATH_BLOCK.sub(_math_block, content)
    content = _DIRECTIVE.sub("", content)
    return _LITERAL_INTRO.sub(":</p>", content)
