"""Pure helpers of diffie.browser: stack parsing, error wording, bounds, element-map cleaning."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from diffie.browser import elements, stabilise
from diffie.browser.recorder import bound, short_error, top_frame
from diffie.browser.runner import BrowserRunner
from diffie.browser.steps import _png_size
from diffie.capture import MAX_TEXT
from diffie.config import Settings
from diffie.errors import BrowserError


def test_top_frame_finds_the_first_frame_with_a_source_url():
    stack = ("TypeError: Cannot read properties of undefined (reading 'items')\n"
             "    at boom (http://127.0.0.1:8000/static/app.js:3:15)\n"
             "    at http://127.0.0.1:8000/static/main.js:10:1")
    assert top_frame(stack) == ("http://127.0.0.1:8000/static/app.js", 3, 15)
    assert top_frame("Error: x\n    at http://h/a.js:7:2") == ("http://h/a.js", 7, 2)
    frame = top_frame("Error: x\n    at async load (https://h:9/b.js?v=1:1:99)")
    assert frame == ("https://h:9/b.js?v=1", 1, 99)


def test_top_frame_skips_frames_without_a_url():
    stack = ("Error: x\n    at <anonymous>:2:22\n"
             "    at eval (eval at run (http://h/e.js:4:5), <anonymous>:1:1)\n"
             "    at run (http://h/e.js:4:5)")
    assert top_frame(stack) == ("http://h/e.js", 4, 5)
    assert top_frame("Error: thrown string") == (None, None, None)
    assert top_frame(None) == (None, None, None)
    assert top_frame("at http://h/x.js:1:2 and more text here") == (None, None, None)


def test_bound_cuts_untrusted_text():
    assert bound(None) == ""
    assert bound("short") == "short"
    long = "x" * (MAX_TEXT + 100)
    assert len(bound(long)) == MAX_TEXT and bound(long).endswith("…")
    assert bound("<script>alert(1)</script>") == "<script>alert(1)</script>"   # kept as text


def test_short_error_drops_api_prefix_and_call_log():
    class FakeError(Exception):
        message = ("Locator.click: Timeout 1500ms exceeded.\nCall log:\n  - waiting for locator('#buy')\n")

    assert short_error(FakeError()) == "Timeout 1500ms exceeded."
    assert short_error(ValueError("plain problem\nsecond line")) == "plain problem"


def test_png_size_reads_the_header():
    size = (1280).to_bytes(4, "big") + (800).to_bytes(4, "big")
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + size
    assert _png_size(header + b"\x08\x06\x00\x00\x00") == (1280, 800)
    assert _png_size(b"not a png") == (0, 0)


def test_element_cleaning_bounds_and_rejects_bad_entries():
    ok = elements._clean_element({"selector": "#a" * 300, "text": "t" * 500, "x": 1.6, "y": 2.4,
                                  "width": 10, "height": 20.5})
    assert ok is not None
    assert len(ok["selector"]) == elements.MAX_SELECTOR and len(ok["text"]) == elements.MAX_ELEMENT_TEXT
    assert (ok["x"], ok["y"], ok["width"], ok["height"]) == (2, 2, 10, 20)
    blank = elements._clean_element({"selector": "p", "text": None, "x": 0, "y": 0, "width": 1,
                                     "height": 1})
    assert blank is not None and blank["text"] == ""
    bad: object
    for bad in ([], "x", {"selector": "", "x": 0, "y": 0, "width": 1, "height": 1},
                {"selector": "p", "x": float("nan"), "y": 0, "width": 1, "height": 1},
                {"selector": "p", "x": True, "y": 0, "width": 1, "height": 1},
                {"selector": "p", "x": "1", "y": 0, "width": 1, "height": 1},
                {"selector": "p", "y": 0, "width": 1, "height": 1}):
        assert elements._clean_element(bad) is None


def test_init_script_pins_clock_seed_and_freeze_style():
    clock = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    script = stabilise.init_script(clock, 42)
    assert "const FIXED = 1714979289000;" in script
    assert "let s = 42 >>> 0;" in script
    assert "animation-duration:1ms!important" in script
    assert "%" not in re.sub(r"\d+%|%\)", "", script)          # every placeholder filled in
    # a naive datetime is taken as UTC; seeds wrap to 32 bits
    assert "const FIXED = 1714979289000;" in stabilise.init_script(clock.replace(tzinfo=None), 1)
    assert "let s = 1 >>> 0;" in stabilise.init_script(clock, 2**32 + 1)


def test_missing_chromium_is_a_browser_error_saying_what_to_do(tmp_path):
    settings = Settings(chromium_path=str(tmp_path / "no-chromium"))
    with pytest.raises(BrowserError) as info:
        with BrowserRunner(settings):
            pass
    assert "apt-get install chromium" in str(info.value)
    assert "DIFFIE_CHROMIUM_PATH" in str(info.value)


def test_runner_outside_a_with_block_says_so():
    runner = BrowserRunner(Settings())
    with pytest.raises(BrowserError, match="context manager"):
        runner._ensure_browser()
