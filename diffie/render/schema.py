"""The verdict's JSON Schema: generated from :class:`diffie.verdict.Verdict`, committed as
``diffie/schemas/verdict.schema.json`` (a test keeps the two equal) and served by the API.

Regenerate after changing the verdict model::

    python -c "from diffie.render.schema import write_schema; write_schema()"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffie.verdict import Verdict

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "verdict.schema.json"


def verdict_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a verdict."""
    schema = Verdict.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def committed_text(schema: dict[str, Any]) -> str:
    """A schema as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_text(text: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def schema_text() -> str:
    """The verdict schema as committed."""
    return committed_text(verdict_schema())


def write_schema(path: Path | None = None) -> Path:
    """Write the schema file (``diffie/schemas/verdict.schema.json`` by default)."""
    return write_text(schema_text(), path or SCHEMA_PATH)
