"""The committed verdict JSON Schema is the one generated from the model, and verdicts fit it."""

from __future__ import annotations

import json

import jsonschema

from diffie.render.schema import SCHEMA_PATH, schema_text, verdict_schema, write_schema
from diffie.verdict import Finding, Flaky, Region, error_verdict, judge


def test_committed_schema_equals_generated():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "regenerate: python -c 'from diffie.render.schema import write_schema; write_schema()'")


def test_verdicts_validate(tmp_path):
    schema = verdict_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = judge("r", [Finding(kind="visual_change", flow="a", viewport="b", message="m",
                            regions=[Region(x=1, y=2, width=3, height=4, pixels=5,
                                            elements=[{"selector": "#a", "text": "t"}])])],
              flaky=[Flaky(flow="a", viewport="b", screenshot="s", pixels=1)])
    for verdict in (v, error_verdict("r", "boom")):
        jsonschema.validate(json.loads(verdict.model_dump_json()), schema)
    assert write_schema(tmp_path / "s.json").read_text(encoding="utf-8") == schema_text()
