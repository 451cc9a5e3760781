"""What a deploy replaces and what persists, for real shell scripts on a real tree: the
``keep`` paths keep the guest's state (the revision's copy there is dropped), ``owner`` owns
the rest, ``build`` → ``migrate`` → ``deploy`` run in that order with each migration's output
reported, and each side is deployed with its own revision's sandbox section."""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from diffie.control import Lines
from diffie.errors import DeployError, SpecError
from diffie.fakes import FakeSandbox, FilesSource, fake_deps, static_deploy
from diffie.pipeline import run_change
from diffie.run_store import ChangeInput
from diffie.sandbox.base import ExecResult, Machine
from diffie.sandbox.deploy import MIGRATE_OUTPUT, deploy_detailed
from diffie.services import ServiceUrls
from diffie.spec import SandboxSpec, parse_spec
from tests.conftest import make_settings
from tests.unit.test_run_change import APP, SPEC


class ShellMachine:
    """A "guest" whose filesystem is a host folder: guest paths in arguments and ``cwd`` are
    mapped under ``root``, commands run with /bin/sh for real."""

    name = "shell"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ran: list[str] = []

    def _map(self, arg: str) -> str:
        return str(self.root / arg.lstrip("/")) if arg.startswith(("/srv", "/var")) else arg

    def exec(self, argv: Sequence[str], *, timeout: float = 120.0,
             env: dict[str, str] | None = None, cwd: str | None = None) -> ExecResult:
        self.ran.append(argv[2] if len(argv) > 2 and argv[1] == "-c" else " ".join(argv))
        mapped = [self._map(a) for a in argv]
        proc = subprocess.run(mapped, cwd=self._map(cwd) if cwd else None, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})
        return ExecResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr, 0.0)

    def put_tree(self, src: Path, dest: str) -> None:
        target = Path(self._map(dest))
        subprocess.run(["rm", "-rf", str(target)], check=True)
        subprocess.run(["cp", "-a", str(src), str(target)], check=True)

    def url(self, guest_port: int) -> str:
        return "http://127.0.0.1:9"

    def set_clock(self, instant: datetime) -> None: ...

    def checkpoint(self) -> None: ...

    def reset(self) -> None: ...


def _sandbox(**fields: object) -> SandboxSpec:
    return SandboxSpec.model_validate({"image": "app", "source_dir": "/srv/app",
                                       "ready_path": "/", **fields})


def _deploy(machine: ShellMachine, tree: Path, spec: SandboxSpec) -> list[str]:
    lines: list[str] = []
    try:
        deploy_detailed(machine, tree, spec, lines.append)
    except DeployError as exc:
        if "did not become ready" not in str(exc):       # no app answers here: expected
            raise
    return lines


def test_kept_paths_survive_and_the_revisions_copy_there_is_dropped(tmp_path: Path) -> None:
    guest = tmp_path / "guest"
    (guest / "srv" / "app" / "instance").mkdir(parents=True)
    (guest / "srv" / "app" / "instance" / "app.sqlite").write_text("the seeded database")
    (guest / "srv" / "app" / "old.py").write_text("the image's code")
    tree = tmp_path / "rev"
    (tree / "instance").mkdir(parents=True)
    (tree / "instance" / "app.sqlite").write_text("a database committed by mistake")
    (tree / "new.py").write_text("the revision's code")
    spec = _sandbox(keep=["instance", "uploads/cache"], owner=getpass.getuser(),
                    ready_timeout_s=0.5)
    _deploy(ShellMachine(guest), tree, spec)
    app = guest / "srv" / "app"
    assert (app / "instance" / "app.sqlite").read_text() == "the seeded database"
    assert (app / "new.py").read_text() == "the revision's code"
    assert not (app / "old.py").exists()                  # everything else is the revision's
    assert not (app / "uploads").exists()                 # nothing kept, nothing made up
    assert not (guest / "var" / "lib" / "diffie" / "deploy-keep").exists()


def test_stages_run_in_order_and_migrations_are_reported(tmp_path: Path) -> None:
    machine = ShellMachine(tmp_path / "guest")
    (tmp_path / "guest" / "srv").mkdir(parents=True)
    tree = tmp_path / "rev"
    tree.mkdir()
    spec = _sandbox(build=["echo build > order.txt"],
                    migrate=["echo migrate >> order.txt; echo 'applied 0002_add_column'"],
                    deploy=["echo deploy >> order.txt"], ready_timeout_s=0.5)
    lines = _deploy(machine, tree, spec)
    app = tmp_path / "guest" / "srv" / "app"
    assert (app / "order.txt").read_text().split() == ["build", "migrate", "deploy"]
    (report,) = [line for line in lines if line.startswith(MIGRATE_OUTPUT)]
    assert "→ exit 0" in report and "applied 0002_add_column" in report
    failing = _sandbox(migrate=["echo 'relation \"orders\" does not exist' >&2; exit 3"])
    with pytest.raises(DeployError, match=r"^migrate command failed with exit code 3") as info:
        deploy_detailed(machine, tree, failing)
    assert 'relation "orders" does not exist' in info.value.output_tail


def test_bad_keep_and_owner_values_name_the_field() -> None:
    base = "flows: [{name: a, steps: [{goto: /}]}]\nsandbox:\n  image: x\n"
    with pytest.raises(SpecError, match=r":4 \(sandbox\.keep\): .*relative to source_dir"):
        parse_spec(base + "  keep: [../etc]\n")
    with pytest.raises(SpecError, match=r":4 \(sandbox\.owner\)"):
        parse_spec(base + "  owner: 'root; rm -rf /'\n")


def test_each_side_is_deployed_with_its_own_revisions_sandbox(tmp_path: Path) -> None:
    base_spec = SPEC.replace('deploy: ["systemctl restart shop"]',
                             'deploy: ["systemctl restart shop-old"]')
    base = {**APP, ".diffie.yml": base_spec}
    settings = make_settings(tmp_path / "data")
    deployed: list[tuple[str, list[str]]] = []

    def recording_deploy(machine: Machine, source: Path, spec: SandboxSpec,
                         progress: Callable[[str], None] | None = None, *,
                         units: Sequence[str] | None = None) -> str | ServiceUrls:
        deployed.append((source.name, list(spec.deploy)))      # source: .../base or .../head
        return static_deploy(machine, source, spec, progress, units=units)

    deps = replace(fake_deps(settings, sandbox=FakeSandbox(),
                             sources={"repo": FilesSource(base, APP)}), deploy=recording_deploy)
    runs = []
    for untrusted in (False, True):
        change = ChangeInput(run_id=secrets.token_hex(8), mode="repo", repo="fake",
                             base_rev="b", head_rev="h", untrusted_head=untrusted)
        verdict = run_change(change, deps, Lines(lambda _line: None))
        assert verdict.status == "pass", verdict.summary
        runs.append(dict(deployed))            # the sides deploy at once: in either order
        deployed.clear()
    assert runs == [{"base": ["systemctl restart shop-old"], "head": ["systemctl restart shop"]},
                    # untrusted: both sides with the base's (trusted) commands
                    {"base": ["systemctl restart shop-old"],
                     "head": ["systemctl restart shop-old"]}]
