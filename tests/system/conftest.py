"""System-test fixtures: the VM host set up, the shop image built (cached across runs), and a
sandbox on a database of the test's own.

Environment:
- ``DIFFIE_VM_SLOTS`` (default 2): snapshots to build; the concurrency test needs 2.
- ``DIFFIE_IMAGE_CACHE_DIR`` (default ``/var/lib/diffie/images`` as root): kept between runs,
  so only the first run on a machine pays for the image build (~5-10 min under TCG). Lease
  overlays live there too (``.leases/``), since QEMU runs unprivileged and must reach them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffie.config import Settings
from diffie.db import Database
from diffie.models import Base
from diffie.sandbox import domain as dx
from diffie.sandbox.images import build_image
from diffie.sandbox.libvirt import Hypervisor, LibvirtSandbox
from diffie.sandbox.slots import Holder
from diffie.sandbox.store import ImageInfo, leases_dir

REPO = Path(__file__).resolve().parents[2]
IMAGE = "shop"
SLOTS = int(os.environ.get("DIFFIE_VM_SLOTS", "2"))


def vm_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        data_dir=data_dir, database_url="", vm_images_dir=REPO / "vm_images", vm_slots=SLOTS,
        vm_domain_type=os.environ.get("DIFFIE_VM_DOMAIN_TYPE", "auto"),
        libvirt_uri=os.environ.get("DIFFIE_LIBVIRT_URI", "qemu:///system"),
        vm_port_base=int(os.environ.get("DIFFIE_VM_PORT_BASE", "47100")))
    cache = os.environ.get("DIFFIE_IMAGE_CACHE_DIR")
    if cache:
        values["image_cache_dir"] = Path(cache)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``diffie`` CLI subprocess on ``settings``' data, image cache, slots
    and ports, with the embedded broker and database and no noise-floor render."""
    return {**os.environ, "DIFFIE_DATA_DIR": str(settings.data_dir),
            "DIFFIE_IMAGE_CACHE_DIR": str(settings.image_cache_dir),
            "DIFFIE_VM_SLOTS": str(settings.vm_slots),
            "DIFFIE_VM_PORT_BASE": str(settings.vm_port_base),
            "DIFFIE_NOISE_FLOOR": "false", "DIFFIE_BROKER_URL": "", "DIFFIE_DATABASE_URL": ""}


@pytest.fixture(scope="session")
def vm_host() -> None:
    """QEMU/libvirt installed and the daemons running (scripts/setup-vm-host.sh)."""
    if os.geteuid() != 0:
        pytest.fail("the VM system tests run as root (qemu:///system, debootstrap)")
    proc = subprocess.run([str(REPO / "scripts" / "setup-vm-host.sh")], capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"scripts/setup-vm-host.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def shop_image(vm_host: None, tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    """The shop image with SLOTS snapshots: built once per machine, then reused."""
    settings = vm_settings(tmp_path_factory.mktemp("image-build"))
    start = time.monotonic()
    info = build_image(settings, IMAGE, slots=SLOTS,
                       progress=lambda line: print(f"[image] {line}", flush=True))
    print(f"[image] {info.key} ready after {time.monotonic() - start:.0f} s "
          f"(cold boot {info.cold_boot_s} s)")
    return info


@pytest.fixture
def vm_data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def vm_db(vm_data: Path) -> Iterator[Database]:
    vm_data.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{vm_data / 'diffie.db'}")
    Base.metadata.create_all(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def sandbox(shop_image: ImageInfo, vm_data: Path, vm_db: Database) -> Iterator[LibvirtSandbox]:
    """A sandbox on the test's own database; afterwards no domain or overlay may be left."""
    settings = vm_settings(vm_data)
    box = LibvirtSandbox(settings, vm_db)
    yield box
    assert leftovers(settings, shop_image) == ([], []), "a domain or overlay was left behind"


def leftovers(settings: Settings, image: ImageInfo) -> tuple[list[str], list[str]]:
    """(domains this test process still holds, its lease directories). Other
    processes on the machine may run leases of the same image meanwhile: those do not count."""
    with Hypervisor(settings.libvirt_uri) as hv:
        domains = []
        for d in hv.diffie_domains():
            holder = Holder.parse(dx.holder_of(d.description))
            if image.key in d.name and holder is not None and holder.pid == os.getpid():
                domains.append(d.name)
    base = leases_dir(settings)     # in the image cache: shared with other processes
    mine = f"-{os.getpid()}."       # <slot>-<pid>.<start>.<nonce>
    dirs = sorted(p.name for p in base.iterdir() if mine in p.name) if base.is_dir() else []
    return domains, dirs
