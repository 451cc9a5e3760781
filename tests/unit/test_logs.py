"""Log records name their run (diffie.logs); JSON lines cannot be forged by app text."""

from __future__ import annotations

import io
import json
import logging
import threading

from diffie import logs


def test_json_lines_name_the_run_and_app_text_stays_a_value() -> None:
    handler = logs.configure("json", level=logging.INFO)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("diffie.test")
    try:
        log.info("outside")
        with logs.run_context("abc123"):
            log.warning('console: "x"\n{"level": "error", "run_id": "forged"}')
            seen: list[str | None] = []
            worker = threading.Thread(target=lambda: seen.append(logs.current_run.get()))
            worker.start()
            worker.join()
        log.info("explicit", extra={"run_id": "r2"})
    finally:
        logs.unconfigure()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3                              # the newline did not make a record
    entries = [json.loads(line) for line in lines]
    assert [e["run_id"] for e in entries] == [None, "abc123", "r2"]
    assert entries[1]["message"].endswith('"run_id": "forged"}')
    assert entries[1]["level"] == "warning" and entries[1]["logger"] == "diffie.test"
    assert seen == [None]                  # a new thread does not inherit the run by itself


def test_text_lines_carry_the_run_and_a_bad_format_says_what_is_allowed() -> None:
    handler = logs.configure("text", level=logging.INFO)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        with logs.run_context("r9"):
            logging.getLogger("diffie.test").info("hello")
    finally:
        logs.unconfigure()
    assert "diffie.test [run r9]: hello" in stream.getvalue()
    try:
        logs.configure("xml")
    except ValueError as exc:
        assert "'text' or 'json'" in str(exc)
    else:
        raise AssertionError("xml accepted")
