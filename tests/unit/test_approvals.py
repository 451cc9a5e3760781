"""Approvals that stick (diffie.approvals): approving a visual finding remembers its
fingerprint for the change's subject; the next run of that subject showing the same change
reports it approved and is not ``changed``; a different rendering is a new finding; errors
cannot be approved; the API, the CLI's helper and GitHub's button share the mechanism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from diffie import run_store
from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.compare.regions import RegionBox
from diffie.compare.visual import fingerprint
from diffie.errors import InputError
from diffie.models import Run
from diffie.submit import approve_findings
from diffie.verdict import Finding, judge
from tests.unit.test_api_runs import URL_BODY


def visual(fid: str, fp: str, flow: str = "home") -> Finding:
    return Finding(id=fid, kind="visual_change", flow=flow, viewport="desktop",
                   message=f"screenshot {flow!r} changed", details={"fingerprint": fp})


def test_a_change_approved_before_does_not_make_the_run_changed() -> None:
    findings = [visual("f-1", "fp-a"), visual("f-2", "fp-b", "cart")]
    fresh = judge("r", [f.model_copy(deep=True) for f in findings])
    assert fresh.status == "changed"
    partly = judge("r", [f.model_copy(deep=True) for f in findings],
                   approvals={"fp-a": "approved by ada on 2026-12-04: intended"})
    assert partly.status == "changed" and partly.summary.startswith("1 visual change(s)")
    assert partly.findings[0].approval == "approved by ada on 2026-12-04: intended"
    assert partly.findings[1].approval is None
    both = judge("r", [f.model_copy(deep=True) for f in findings],
                 approvals={"fp-a": "ok", "fp-b": "ok"})
    assert (both.status, both.summary) == ("pass", "no new findings; 2 visual change(s) "
                                                   "approved before")
    error = Finding(kind="console_error", flow="home", viewport="desktop", message="boom",
                    details={"fingerprint": "fp-a"})
    assert judge("r", [error], approvals={"fp-a": "ok"}).status == "fail"


def _png(path: Path, colour: tuple[int, int, int], at: tuple[int, int] = (10, 10)) -> Path:
    img = Image.new("RGB", (100, 60), (255, 255, 255))
    for x in range(at[0], at[0] + 20):
        for y in range(at[1], at[1] + 10):
            img.putpixel((x, y), colour)
    img.save(path)
    return path


def test_the_fingerprint_is_the_changed_area_of_head(tmp_path: Path) -> None:
    box = [RegionBox(x=10, y=10, width=20, height=10, pixels=200)]
    red = _png(tmp_path / "red.png", (255, 0, 0))
    again = _png(tmp_path / "again.png", (255, 0, 0))
    elsewhere = _png(tmp_path / "elsewhere.png", (255, 0, 0))        # red there, and ...
    with Image.open(elsewhere) as img:
        plus = img.copy()
    plus.putpixel((80, 50), (0, 128, 0))                               # ... a mark outside
    plus.save(elsewhere)
    blue = _png(tmp_path / "blue.png", (0, 0, 255))

    def fp(png: Path, regions: list[RegionBox] = box, flow: str = "home") -> str:
        return fingerprint("visual_change", flow, "desktop", "home", png, regions,
                           max_pixels=10**6)

    assert fp(red) == fp(again)                           # the same change, rendered again
    assert fp(red) != fp(blue)                            # another colour there
    assert fp(red) == fp(elsewhere)                       # outside the area: not in it ...
    wider = box + [RegionBox(70, 45, 20, 10, 200)]
    assert fp(red, wider) != fp(elsewhere, wider)         # ... unless it changed there too
    assert fp(red, flow="cart") != fp(red)


def _finished_run(ctx: AppContext, findings: list[Finding]) -> str:
    run_id = run_store.submit_url(ctx.db, base_url=URL_BODY["base_url"],
                                  head_url=URL_BODY["head_url"], spec_text=URL_BODY["spec"])
    verdict = judge(run_id, findings)
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status, run.verdict_status = "done", verdict.status
        run.verdict = verdict.model_dump(mode="json")
    return run_id




def test_approving_sticks_for_the_next_run_of_the_same_urls(ctx: AppContext) -> None:
    heard: list[str] = []
    ctx.events.subscribe(type("L", (), {"approved": lambda _self, r: heard.append(r)})())
    first = _finished_run(ctx, [visual("f-1", "fp-a"), visual("f-2", "fp-b", "cart"),
                                Finding(id="f-3", kind="console_error", message="x")])
    with pytest.raises(InputError, match="not a visual change") as bad:
        approve_findings(ctx, first, ["f-3"], by="ada")
    assert bad.value.where == "findings"
    with pytest.raises(InputError, match="no such finding: f-9"):
        approve_findings(ctx, first, ["f-1", "f-9"], by="ada")
    assert run_store.change_input(ctx.db, first).approvals == {}       # nothing recorded

    done = approve_findings(ctx, first, ["f-1"], by="ada", note="the new banner")
    assert (done.approved, done.whole_run) == (["f-1"], False)
    assert heard == [first]
    second = _finished_run(ctx, [])
    marks = run_store.change_input(ctx.db, second).approvals
    assert list(marks) == ["fp-a"] and "approved by ada" in marks["fp-a"]
    assert marks["fp-a"].endswith(": the new banner")

    everything = approve_findings(ctx, first, None, by="ada")
    assert everything.whole_run and sorted(everything.approved) == ["f-1", "f-2"]
    with ctx.db.session() as s:
        run = s.get(Run, first)
        assert run is not None and run.approved and run.verdict is not None
        got: dict[str, Any] = {f["id"]: f.get("approval") for f in run.verdict["findings"]}
        assert got["f-3"] is None and got["f-1"] and got["f-2"]


def test_the_api_approves_and_names_what_it_cannot(ctx: AppContext) -> None:
    run_id = _finished_run(ctx, [visual("f-1", "fp-a")])
    with TestClient(create_app(context=ctx)) as client:
        wrong = client.post(f"/v1/runs/{run_id}/approve", json={"findings": ["f-x"]})
        assert wrong.status_code == 422 and "no such finding: f-x" in wrong.text
        ok = client.post(f"/v1/runs/{run_id}/approve", json={"note": "intended", "by": "ada"})
        assert ok.status_code == 200 and ok.json() == {"run_id": run_id, "approved": ["f-1"],
                                                       "whole_run": True}
        assert client.post("/v1/runs/0123456789abcdef/approve").status_code == 404
        queued = client.post("/v1/runs", json=URL_BODY).json()["id"]
        assert client.post(f"/v1/runs/{queued}/approve").status_code == 409
