"""stable_screenshot retakes until two consecutive shots are byte-identical (a page stand-in that
returns a scripted sequence of shots: the retake logic without a browser's timing)."""

from __future__ import annotations

from typing import Any, cast

from playwright.sync_api import Page

from diffie.browser import stabilise


class ScriptedPage:
    def __init__(self, shots: list[bytes]) -> None:
        self.shots = list(shots)
        self.taken = 0
        self.waits: list[float] = []

    def screenshot(self, **_kwargs: Any) -> bytes:
        shot = self.shots[min(self.taken, len(self.shots) - 1)]
        self.taken += 1
        return shot

    def wait_for_timeout(self, ms: float) -> None:
        self.waits.append(ms)


def _shoot(shots: list[bytes], max_shots: int = 10) -> tuple[stabilise.Shot, ScriptedPage]:
    page = ScriptedPage(shots)
    shot = stabilise.stable_screenshot(cast(Page, page), full_page=False,
                                       timeout_ms=5000, max_shots=max_shots)
    return shot, page


def test_retakes_until_two_consecutive_shots_agree() -> None:
    shot, page = _shoot([b"0", b"1", b"2", b"3", b"3"])
    assert (shot.png, shot.attempts, shot.stable) == (b"3", 5, True)
    assert page.waits == [stabilise.RETAKE_GAP_MS] * 4


def test_a_page_that_never_settles_is_unstable_after_max_shots() -> None:
    shot, page = _shoot([b"a", b"b", b"a", b"b", b"a", b"b"], max_shots=4)
    assert (shot.attempts, shot.stable, page.taken) == (4, False, 4)


def test_a_still_page_takes_two_shots() -> None:
    shot, _page = _shoot([b"x"])
    assert (shot.png, shot.attempts, shot.stable) == (b"x", 2, True)
