"""diffie.gfm.inert against cmark-gfm, the renderer GitHub uses (scripts/bootstrap.sh installs
Debian's cmark-gfm): untrusted text renders as itself, never as a link, HTML or table cells.
Mentions and issue references are GitHub-side features cmark does not do: their neutralised
form is asserted."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from diffie.gfm import ZWSP, inert

CMARK = shutil.which("cmark-gfm")

ATTACKS = [
    "http://evil.example/x", "https://evil.example", "ftp://evil.example/f",
    "www.evil.example", "WWW.Evil.Example/path", "ada@evil.example", "mailto:ada@evil.example",
    "xmpp:ada@evil.example", "<http://evil.example>", "<ada@evil.example>",
    "[click](http://evil.example)", "![img](http://evil.example/i.png)",
    "[ref]: http://evil.example", "http&#58;//evil.example", "<a href='http://e.example'>a</a>",
    "<script>alert(1)</script>", "&lt;img src=x&gt;",
]


def render(markdown: str) -> str:
    assert CMARK is not None, "cmark-gfm is needed: apt-get install cmark-gfm"
    return subprocess.run([CMARK, "-e", "autolink", "-e", "table", "-e", "strikethrough"],
                          input=markdown.encode(), capture_output=True,
                          check=True).stdout.decode()


@pytest.mark.parametrize("text", ATTACKS)
def test_no_link_or_html_in_a_line_or_a_table_cell(text: str) -> None:
    for markdown in (inert(text) + "\n", f"| a | b |\n|---|---|\n| {inert(text)} | x |\n"):
        html = render(markdown)
        assert "<a " not in html and "<img" not in html and "<script" not in html, html


def test_pipes_and_newlines_keep_one_cell() -> None:
    cell = inert("x | y\n| z \\| w")
    html = render(f"| a | b |\n|---|---|\n| {cell} | end |\n")
    assert html.count("<td>") == 2 and "<td>end</td>" in html


def test_the_text_still_reads_the_same() -> None:
    text = "Uncaught TypeError: cannot read 'x' of undefined at https://shop.test/app.js:12"
    html = render(inert(text, 1000) + "\n")
    assert html.replace(ZWSP, "").strip() == f"<p>{text}</p>", html


@pytest.mark.parametrize(("text", "safe"), [
    ("@octocat", f"@{ZWSP}octocat"), ("@acme/owners", f"@{ZWSP}acme/owners"),
    ("#123", f"#{ZWSP}123"), ("acme/shop#12", f"acme/shop#{ZWSP}12"),
    ("GH-42", f"GH-{ZWSP}42"), ("&#64;octocat", f"&amp;#{ZWSP}64;octocat"),
])
def test_mentions_and_references_are_broken(text: str, safe: str) -> None:
    assert inert(text) == safe


def test_clipped_to_the_limit() -> None:
    assert inert("x" * 500, 10) == "x" * 9 + "\u2026"
