"""A worker killed in the middle of a VM run: the reaper removes its domain, overlay and lease."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from diffie.db import Database
from diffie.models import Slot
from diffie.sandbox import domain as dx
from diffie.sandbox.libvirt import Hypervisor, LibvirtSandbox
from diffie.sandbox.reaper import reap
from diffie.sandbox.slots import Holder
from diffie.sandbox.store import ImageInfo, leases_dir

from .conftest import REPO, vm_settings

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from diffie.db import Database
    from diffie.sandbox.libvirt import LibvirtSandbox
    sys.path.insert(0, {repo!r})
    from tests.system.conftest import vm_settings
    settings = vm_settings(Path({data!r}))
    sandbox = LibvirtSandbox(settings, Database(settings.resolved_database_url()))
    with sandbox.lease("shop", run_id="doomed") as machine:
        assert machine.exec(["true"]).ok
        print(machine.name, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)     # a worker dying mid-run: no clean-up at all
""")


def _domains_of(pid: int) -> list[str]:
    with Hypervisor("qemu:///system") as hv:
        return [d.name for d in hv.diffie_domains()
                if (h := Holder.parse(dx.holder_of(d.description))) is not None and h.pid == pid]


def test_reaper_cleans_up_after_a_killed_worker(shop_image: ImageInfo, vm_data: Path,
                                                vm_db: Database,
                                                sandbox: LibvirtSandbox) -> None:
    settings = vm_settings(vm_data)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), data=str(vm_data))],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=1200)
    assert child.returncode == -9, f"child did not die as planned ({child.returncode}): {err[-2000:]}"
    name = out.strip()
    assert name.startswith(dx.PREFIX)
    assert _domains_of(child.pid) == [name]                      # left behind, running
    mine = f"-{child.pid}."      # lease dirs are <slot>-<pid>.<start>.<nonce>, shared by the host
    assert any(mine in p.name for p in leases_dir(settings).iterdir())
    with vm_db.session() as s:
        assert [r.holder for r in s.scalars(select(Slot)) if r.holder]   # slot still leased

    report = reap(settings, vm_db)

    assert name in report.domains and not report.errors
    assert _domains_of(child.pid) == []
    assert [p for p in leases_dir(settings).iterdir() if mine in p.name] == []
    with vm_db.session() as s:
        assert all(r.holder is None for r in s.scalars(select(Slot)))
    # the freed slot works again
    with sandbox.lease("shop", run_id="after-reap") as machine:
        assert machine.exec(["true"]).ok


def test_reaper_leaves_live_leases_alone(sandbox: LibvirtSandbox, vm_data: Path,
                                        vm_db: Database) -> None:
    settings = vm_settings(vm_data)
    with sandbox.lease("shop", run_id="alive") as machine:
        report = reap(settings, vm_db)
        assert machine.name not in report.domains and report.overlays == []
        assert machine.exec(["true"]).ok
