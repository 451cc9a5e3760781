"""The GitHub App end to end over loopback HTTP, with a stand-in sandbox: the same flow as
``tests/system/test_github_e2e.py`` (signed webhooks from GitHub's fixtures, the GitHub REST
stand-in, git's smart HTTP with the installation token, the API under uvicorn, a worker), but
each "VM" is the shop run on the host (``ShopServer``: its own PostgreSQL database) so the
GitHub logic is covered quickly. Real Chromium drives the shop's flows.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), like the shop's own tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from diffie.app_context import AppContext
from diffie.composition import with_deps
from diffie.sandbox.base import ExecResult, Machine
from diffie.spec import SandboxSpec
from examples.corpus import ShopServer
from tests.conftest import make_settings, wait_until
from tests.github_e2e import OWNER, PR_NUMBER, REPO, Hub, github_hub, main_flow

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 600.0


class HostShop:
    """A "VM" that is the shop on the host; ``host_deploy`` starts it from the deployed tree."""

    def __init__(self, log: list[Any]) -> None:
        self.name = "host-shop"
        self.log = log
        self.server: ShopServer | None = None

    def exec(self, argv: Any, *, timeout: float = 120.0, env: Any = None,
             cwd: str | None = None) -> ExecResult:
        return ExecResult(tuple(argv), 0, "", "", 0.0)

    def put_tree(self, src: Path, dest: str) -> None:
        self.log.append(("put_tree", src.name))

    def url(self, guest_port: int) -> str:
        assert self.server is not None
        return self.server.url

    def set_clock(self, instant: datetime) -> None:
        self.log.append(("set_clock", instant))

    def checkpoint(self) -> None:
        self.log.append(("checkpoint",))

    def reset(self) -> None:
        self.log.append(("reset",))


class HostShopSandbox:
    def __init__(self) -> None:
        self.log: list[Any] = []

    @contextmanager
    def lease(self, image: str, *, run_id: str = "", wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> Iterator[HostShop]:
        self.log.append(("lease", image, run_id))
        if on_slot is not None:
            on_slot()
        machine = HostShop(self.log)
        try:
            yield machine
        finally:
            if machine.server is not None:
                machine.server.__exit__(None, None, None)
            self.log.append(("destroy", image, run_id))


def host_deploy(machine: Machine, source: Path, spec: SandboxSpec,
                progress: Callable[[str], None] | None = None, *,
                units: Sequence[str] | None = None) -> str:
    assert isinstance(machine, HostShop)
    machine.put_tree(source, spec.source_dir)
    machine.server = ShopServer(source).__enter__()
    return machine.server.url


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    sandbox = HostShopSandbox()

    def configure(ctx: AppContext) -> None:
        with_deps(ctx, sandbox=sandbox, deploy=host_deploy)

    with github_hub(tmp_path, lambda gh: make_settings(tmp_path / "data", heartbeat_s=1.0, **gh),
                    first_change="colour-change-brand", configure=configure) as h:
        yield h


def test_pull_request_check_run_comment_and_rerun(hub: Hub) -> None:
    _, run2 = main_flow(hub, run_timeout=RUN_TIMEOUT)
    comment = hub.our_comments()[0]

    # "Re-run" on the check run: a new run of the same change, a new check run, same comment
    rerun = hub.check_run_event("check_run.rerequested", run2, head=hub.repo.head)
    assert rerun["status"] == "queued" and rerun["run_id"] != run2, rerun
    run3 = rerun["run_id"]
    cr3 = hub.wait_conclusion(run3, "failure", timeout=RUN_TIMEOUT)
    assert cr3["id"] != hub.check_run(run2)["id"] and cr3["head_sha"] == hub.repo.head
    assert hub.statuses(run3) == ["queued", "in_progress", "completed"]
    assert hub.wait_comment(f"/v1/runs/{run3}/signed/")["id"] == comment["id"]


def test_approve_button_and_superseding_push(hub: Hub) -> None:
    opened = hub.deliver("pull_request.opened", head=hub.repo.head)
    run1 = opened["run_id"]
    hub.wait_conclusion(run1, "action_required", timeout=RUN_TIMEOUT)
    hub.wait_comment("changed")

    # the "Approve changes" button turns the check green and says so in the comment
    answer = hub.check_run_event("check_run.requested_action", run1, head=hub.repo.head,
                                 identifier="approve")
    assert (answer["status"], answer["run_id"]) == ("approved", run1), answer
    cr1 = hub.wait_conclusion(run1, "success", timeout=60)
    assert cr1["actions"] == []
    assert hub.run(run1)["verdict"]["approved"] is True
    wait_until(lambda: hub.run_row(run1).published, timeout=30, what="republished")
    assert "approved" in hub.wait_comment("approved")["body"].lower()

    # a push while its run is running, then another one: the older run is cancelled
    head_a = hub.repo.push("page-error-home")
    run_a = hub.deliver("pull_request.synchronize", head=head_a)["run_id"]
    hub.wait_run(run_a, statuses=("running",), timeout=120)
    head_b = hub.repo.push("copy-change-button")
    sync_b = hub.deliver("pull_request.synchronize", head=head_b)
    assert sync_b["superseded"] == [run_a], sync_b
    cr_a = hub.wait_conclusion(run_a, "cancelled", timeout=60)
    assert "superseded" in cr_a["output"]["summary"].lower()
    assert hub.run(run_a)["status"] == "cancelled"
    run_b = sync_b["run_id"]
    cr_b = hub.wait_conclusion(run_b, "failure", timeout=RUN_TIMEOUT)
    assert cr_b["head_sha"] == head_b
    assert hub.run(run_a)["status"] == "cancelled"       # the worker did not record over it
    assert hub.run(run1)["status"] == "done"             # finished runs are left alone
    # the check run is published before the comment: wait for the comment to follow
    hub.wait_comment(f"/v1/runs/{run_b}/signed/")


def test_fork_pull_request_through_a_github_outage(hub: Hub) -> None:
    # the pull request's head lives in a fork only: fetched from there, published on the base
    fork_head = hub.repo.push("copy-change-button", owner="forker")
    opened = hub.deliver("pull_request.opened", head=fork_head, head_owner="forker")
    run_id = opened["run_id"]
    # a fork's code runs only once a maintainer authorises it
    assert opened["status"] == "waiting", opened
    waiting = hub.wait_conclusion(run_id, "action_required", timeout=60)
    assert [a["identifier"] for a in waiting["actions"]] == ["authorize"]
    assert hub.run(run_id)["status"] == "waiting" and not hub.git_server.requests
    answer = hub.check_run_event("check_run.requested_action", run_id, head=fork_head,
                                 identifier="authorize")
    assert (answer["status"], answer["run_id"]) == ("queued", run_id), answer
    # a completed check run cannot be queued again: a new one follows the run
    new_id = wait_until(lambda: (c := hub.run_row(run_id).check_run_id) != waiting["id"] and c,
                        timeout=60, what="the authorised run's new check run")
    assert hub.standin.check_runs[new_id]["status"] in ("queued", "in_progress")
    retired = wait_until(lambda: (c := hub.standin.check_runs[waiting["id"]])["conclusion"]
                         == "neutral" and c, timeout=60, what="the waiting check run retired")
    assert retired["actions"] == [] and "maintainer-mo" in retired["output"]["summary"]

    # GitHub answers 502 to everything on the repository while the run is verified
    outage_start = time.monotonic()
    for method in ("GET", "POST", "PATCH"):
        hub.standin.fail_next(method, rf"/repos/{OWNER}/{REPO}/.*", 502, times=1_000_000)
    run = hub.wait_run(run_id, timeout=RUN_TIMEOUT)
    assert run["status"] == "done" and run["verdict"]["status"] == "changed", run
    time.sleep(4)                                     # the publisher tries, and fails
    assert hub.check_run(run_id)["status"] != "completed"
    assert hub.our_comments() == [] and not hub.run_row(run_id).published
    hub.standin.clear_failures()
    print(f"[e2e] GitHub was down for {time.monotonic() - outage_start:.0f} s")

    # ... and the result is published once it answers again
    cr = hub.wait_conclusion(run_id, "action_required", timeout=120)
    assert cr["owner"] == OWNER and cr["head_sha"] == fork_head
    hub.wait_comment("changed")
    wait_until(lambda: hub.run_row(run_id).published, timeout=30, what="published")
    failed = [r for r in hub.standin.requests if r.status == 502]
    assert failed, "the outage was not exercised"
    paths = {r.path.split(".git")[0] for r in hub.git_server.requests}
    assert paths == {f"/{OWNER}/{REPO}", f"/forker/{REPO}"}
    assert all(r.authorized for r in hub.git_server.requests if "git-upload-pack" in r.path)
    assert len(hub.standin.comments_on(OWNER, REPO, PR_NUMBER)) == 1
