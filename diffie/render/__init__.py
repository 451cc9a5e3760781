"""Publishing a verdict: the HTML report (:mod:`.html`), Markdown for GitHub (:mod:`.markdown`),
JUnit XML (:mod:`.junit`), CTRF JSON (:mod:`.ctrf`) and the verdict's JSON Schema
(:mod:`.schema`)."""

from __future__ import annotations

from diffie.render.ctrf import render_ctrf
from diffie.render.html import render_report
from diffie.render.junit import render_junit
from diffie.render.markdown import verdict_markdown
from diffie.render.schema import verdict_schema, write_schema

__all__ = ["render_ctrf", "render_junit", "render_report", "verdict_markdown", "verdict_schema",
           "write_schema"]
