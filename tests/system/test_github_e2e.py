"""The GitHub App end to end with the real VM: a signed ``pull_request.opened`` webhook (GitHub's
fixture, repository rewritten to a local one) reaches the API over HTTP; the worker fetches the
shop over git's smart HTTP with the installation token, deploys base and head into restored VM
snapshots (libvirt + QEMU), drives Chromium through the shop's flows, and the GitHub stand-in
receives the check run (queued → in_progress → completed ``action_required``) and the comment;
a second push (a regression) ends ``failure`` and updates the same comment.

The GitHub logic without the VM (superseding push, re-run, approve, fork, outage) is covered by
``tests/integration/test_github_e2e.py`` with a stand-in sandbox.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diffie.config import Settings
from diffie.sandbox.libvirt import LibvirtSandbox
from diffie.sandbox.store import ImageInfo
from tests.github_e2e import Hub, github_hub, main_flow
from tests.system.conftest import leftovers, vm_settings

pytestmark = [pytest.mark.system, pytest.mark.timeout(3600)]

RUN_TIMEOUT = 1500.0       # one run: two VM restores and the shop's flows under TCG


@pytest.fixture
def hub(shop_image: ImageInfo, tmp_path: Path) -> Iterator[Hub]:
    made: list[Settings] = []

    def settings(gh: dict[str, Any]) -> Settings:
        s = vm_settings(tmp_path / "data", broker_url="", api_tokens=[], noise_floor=False,
                        heartbeat_s=2.0, stale_after_s=120.0,
                        queue_name=f"diffie-test-{secrets.token_hex(4)}", **gh)
        made.append(s)
        return s

    with github_hub(tmp_path, settings, first_change="colour-change-brand") as h:
        assert isinstance(h.ctx.deps.sandbox, LibvirtSandbox)          # the real VMs
        yield h
    assert leftovers(made[0], shop_image) == ([], []), "a domain or overlay was left behind"


def test_pull_request_in_a_vm_to_check_run_and_comment(hub: Hub) -> None:
    run1, run2 = main_flow(hub, run_timeout=RUN_TIMEOUT)
    for run_id in (run1, run2):
        meta = hub.run(run_id)
        assert meta["change"]["mode"] == "github"
