"""Untrusted text made inert for GitHub Flavored Markdown (PR comments, check-run summaries).

Text from the app under test or from a change — console messages, page titles, URLs,
selectors, element text, flow names — goes into Markdown that GitHub renders for everyone who
can see the pull request. :func:`inert` turns it into one line that renders as the same
characters and nothing else:

- no HTML, no entities (``&``, ``<``, ``>`` become entities, so ``&#64;`` stays visible text);
- no Markdown: emphasis, code, links, images and table pipes are backslash-escaped;
- no links: GFM's extended autolinks (``http://``, ``https://``, ``ftp://``, ``www.``, e-mail
  addresses, ``mailto:``/``xmpp:``) are broken with a zero-width space (U+200B) between
  ``:`` and ``//``, after ``mailto:``/``xmpp:``, inside ``www.`` and after ``@``;
- no notifications or cross-references: ``@user``/``@org/team`` (U+200B after ``@``),
  ``#123``, ``owner/repo#123`` and ``GH-123`` (U+200B after ``#`` / ``GH-``).

Checked against cmark-gfm (the renderer GitHub uses) in tests/unit/test_gfm.py.
"""

from __future__ import annotations

import re

from diffie.text import one_line

ZWSP = "\u200b"

_ESCAPE = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\\": "\\\\", "`": "\\`",
    "*": "\\*", "_": "\\_", "~": "\\~", "[": "\\[", "]": "\\]", "!": "\\!",
})
# after escaping: break what GitHub would turn into a link, a mention or a reference
_BREAKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"@"), "@" + ZWSP),                                    # mentions, e-mail
    (re.compile(r"#"), "#" + ZWSP),                                    # #123, owner/repo#123
    (re.compile(r"(?i)\b(gh)-"), r"\1-" + ZWSP),                       # GH-123
    (re.compile(r":(?=//)"), ":" + ZWSP),                              # scheme://
    (re.compile(r"(?i)\b(mailto|xmpp):"), r"\1:" + ZWSP),             # mailto:, xmpp:
    (re.compile(r"(?i)\b(www)\."), r"\1" + ZWSP + "."),                # www.example.com
)


def inert(value: object, limit: int = 300) -> str:
    """``value`` as one line of inert Markdown text, whitespace folded, at most ``limit``
    characters of the original (an ellipsis marks a cut)."""
    text = one_line(value, limit).translate(_ESCAPE)
    for pattern, repl in _BREAKS:
        text = pattern.sub(repl, text)
    return text
