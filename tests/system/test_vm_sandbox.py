"""The real VM path: restore a snapshot of the shop image, run commands, deploy, tear down."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from diffie.db import Database
from diffie.errors import DeployError
from diffie.models import Slot
from diffie.sandbox.deploy import deploy, deploy_detailed
from diffie.sandbox.libvirt import LibvirtMachine, LibvirtSandbox
from diffie.spec import load_spec

from .conftest import REPO, SLOTS

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]
SHOP = REPO / "examples" / "shop"


def _shop_copy(dest: Path) -> Path:
    shutil.copytree(SHOP, dest, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".mypy_cache", "changes"))
    return dest


def test_restore_exec_and_the_seeded_app(sandbox: LibvirtSandbox) -> None:
    start = time.monotonic()
    with sandbox.lease("shop", run_id="sys-basic") as machine:
        restored = time.monotonic() - start
        health = httpx.get(machine.url(8000) + "/health", timeout=30)
        assert health.status_code == 200, health.text
        products = httpx.get(machine.url(8000) + "/api/products", timeout=30)
        assert products.status_code == 200 and "Pixel Tee" in products.text
        res = machine.exec(["runuser", "-u", "postgres", "--", "psql", "-tAc",
                            "select count(*) from users"], cwd="/tmp", env={"PGDATABASE": "shop"})
        assert res.ok and int(res.stdout.strip()) >= 2, res
        failing = machine.exec(["sh", "-c", "echo to-out; echo to-err >&2; exit 7"])
        assert (failing.exit_code, failing.stdout, failing.stderr) == (7, "to-out\n", "to-err\n")
        slow = machine.exec(["sleep", "30"], timeout=2)
        assert slow.exit_code == 124 and "timed out" in slow.stderr
    print(f"restore to a usable machine: {restored:.1f} s")


def test_the_clock_is_set_at_restore_and_on_demand(sandbox: LibvirtSandbox) -> None:
    with sandbox.lease("shop", run_id="sys-clock") as machine:
        guest_now = int(machine.exec(["date", "-u", "+%s"]).stdout)
        assert abs(guest_now - time.time()) < 30          # not the moment of the save
        instant = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
        machine.set_clock(instant)
        guest = int(machine.exec(["date", "-u", "+%s"]).stdout)
        assert 0 <= guest - instant.timestamp() < 30


def test_put_tree_and_deploy_per_the_shop_spec(sandbox: LibvirtSandbox, tmp_path: Path) -> None:
    spec = load_spec(SHOP / ".diffie.yml").sandbox
    assert spec is not None and spec.image is not None
    source = _shop_copy(tmp_path / "shop")
    (source / "static" / "deployed.txt").write_text("deployed by the system test\n")
    with sandbox.lease(spec.image, run_id="sys-deploy") as machine:
        result = deploy_detailed(machine, source, spec)
        page = httpx.get(result.base_url + "/static/deployed.txt", timeout=30)
        assert page.status_code == 200 and page.text == "deployed by the system test\n"
        assert httpx.get(result.base_url + spec.ready_path, timeout=30).status_code == 200
        print(f"deploy: copy {result.put_tree_s:.1f} s, commands {result.commands_s:.1f} s, "
              f"ready {result.ready_s:.1f} s")

        broken = source / "app" / "money.py"
        broken.write_text(broken.read_text() + "\ndef oops(:\n")
        with pytest.raises(DeployError) as err:
            deploy(machine, source, spec)
        assert err.value.exit_code not in (None, 0)
        assert "compileall" in err.value.command and "SyntaxError" in err.value.output_tail


@pytest.mark.skipif(SLOTS < 2, reason="needs DIFFIE_VM_SLOTS >= 2")
def test_two_concurrent_leases_do_not_collide(sandbox: LibvirtSandbox, vm_db: Database) -> None:
    machines: dict[str, LibvirtMachine] = {}
    errors: list[BaseException] = []
    both_up = threading.Barrier(2, timeout=900)

    def worker(tag: str) -> None:
        try:
            with sandbox.lease("shop", run_id=tag) as machine:
                machines[tag] = machine
                assert machine.exec(["sh", "-c", f"echo {tag} > /tmp/whoami"]).ok
                both_up.wait()
                assert httpx.get(machine.url(8000) + "/health", timeout=30).status_code == 200
                assert machine.exec(["cat", "/tmp/whoami"]).stdout.strip() == tag
                both_up.wait()
        except BaseException as exc:  # reported below
            errors.append(exc)
            both_up.abort()

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    left, right = machines["left"], machines["right"]
    assert left.name != right.name and left.slot != right.slot
    assert left.url(8000) != right.url(8000)
    with vm_db.session() as s:
        assert all(row.holder is None for row in s.scalars(select(Slot)))


def test_nothing_is_left_when_the_lease_body_raises(sandbox: LibvirtSandbox, vm_db: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with sandbox.lease("shop", run_id="sys-raise") as machine:
            assert machine.exec(["true"]).ok
            raise RuntimeError("boom")
    with vm_db.session() as s:
        assert all(row.holder is None for row in s.scalars(select(Slot)))
    # the fixture asserts that no domain and no overlay directory remain
