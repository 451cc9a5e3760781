"""The sample shop as a team would keep it: its production shape in its own repository
(``.diffie/image.yml``, not Diffie's ``vm_images/``), with a deploy that installs the
revision's ``requirements.txt`` through Diffie's package proxy. Used by the system test of
repository recipes and by ``python -m benchmarks.deps``."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from examples.corpus import SHOP_DIR

SERVICE = Path(__file__).resolve().parent.parent / "vm_images" / "shop" / "files" / "shop.service"

# The shop's recipe as a repository keeps it: no build-host 'run' (the user and the
# PostgreSQL port pin happen in the guest, in 'seed'); the image holds what seeding needs (the
# code and the schema), the deploy copies the revision's whole tree over it.
RECIPE = """\
description: the shop, with its production shape in its own repository
suite: bookworm
packages: [postgresql, python3, python3-psycopg, python3-pip, tar]   # the shop image's: one debootstrap
vm: {memory_mib: 1024, vcpus: 2, disk_mib: 3072}
ports: [8000]
files:
  - {src: ../app, dest: /srv/shop/app}
  - {src: ../db, dest: /srv/shop/db}
  - {src: shop.service, dest: /etc/systemd/system/shop.service}
enable: [shop.service]
seed_after: [postgresql.service]
seed:
  - useradd --system --home-dir /srv/shop --no-create-home --shell /usr/sbin/nologin shop
  - sed -i 's/^port = .*/port = 5432/' /etc/postgresql/15/main/postgresql.conf
  - systemctl restart postgresql@15-main.service
  - until pg_isready -q; do sleep 0.5; done
  - mkdir -p /srv/shop/state && echo "seeded at build time" > /srv/shop/state/seeded.txt
  - runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qc "CREATE ROLE shop LOGIN"
  - runuser -u postgres -- createdb -O shop shop
  - >-
    cd /srv/shop && runuser -u shop --
    env SHOP_DATABASE_URL=postgresql:///shop?host=/var/run/postgresql python3 -m app.initdb
ready:
  command: >-
    pg_isready -q && python3 -c "import urllib.request as u;
    u.urlopen('http://127.0.0.1:8000/health', timeout=3)"
  http: {port: 8000, path: /health}
  timeout_s: 600
"""


# A second service (sandbox.services): the seed's state/ folder over HTTP on port 8001, started by
# the deploy; its flow reads it from the browser, addressed by the service's name.
FILES_SERVICE = ('test -n "$DIFFIE_SERVICE_URL_FILES" && systemd-run --unit shop-files '
                 "-p User=shop -p WorkingDirectory=/srv/shop/state python3 -m http.server 8001")
SERVICES = [{"name": "shop", "port": 8000, "ready_path": "/health"},
            {"name": "files", "port": 8001, "ready_path": "/seeded.txt"}]
FILES_FLOW = {"name": "files", "service": "files", "reset": False,
              "steps": [{"goto": "/seeded.txt"},
                        {"expect_text": {"selector": "body", "text": "seeded at build time"}},
                        {"goto": {"url": "/", "service": "shop"}},
                        {"expect_visible": "header"}]}


def shop_with_its_recipe(dest: Path, *, flows: list[str] | None = None,
                         viewports: list[str] | None = None, services: bool = False) -> Path:
    shutil.copytree(SHOP_DIR, dest, ignore=shutil.ignore_patterns("changes", "__pycache__"))
    (dest / ".diffie").mkdir()
    (dest / ".diffie" / "image.yml").write_text(RECIPE)
    shutil.copy(SERVICE, dest / ".diffie")
    spec = (dest / ".diffie.yml").read_text()
    assert "  image: shop" in spec and "  deploy:\n" in spec
    spec = spec.replace("  image: shop", "  recipe: .diffie/image.yml")
    spec = spec.replace("  deploy:\n", DEPLOY_SEMANTICS)
    if flows or viewports or services:           # a smaller spec (tests that are about the image)
        data = yaml.safe_load(spec)
        data["flows"] = [f for f in data["flows"] if not flows or f["name"] in flows]
        data["viewports"] = {k: v for k, v in data["viewports"].items()
                             if not viewports or k in viewports}
        if services:                             # the shop and a second service, by name
            sandbox = data["sandbox"]
            del sandbox["port"], sandbox["ready_path"]
            sandbox["services"] = SERVICES
            sandbox["deploy"].append(FILES_SERVICE)
            data["flows"].append(FILES_FLOW)
        spec = yaml.safe_dump(data, sort_keys=False)
    (dest / ".diffie.yml").write_text(spec)
    return dest


# pip's own messages end up in the deploy_error; --break-system-packages: Debian's python3
INSTALL = ("if [ -f requirements.txt ]; then pip3 install --break-system-packages "
           "--root-user-action=ignore --no-cache-dir -r requirements.txt && "
           "python3 -c 'import markdown'; fi")
MISSING = "diffie-no-such-package-7f3a"
MIGRATE = ("runuser -u shop -- env SHOP_DATABASE_URL=postgresql:///shop?host=/var/run/postgresql "
           "python3 -m app.initdb")
# state/ (made by the seed) survives every deploy; the tree belongs to the app's user; the
# dependency install is the build step, the (idempotent) schema setup the migration
DEPLOY_SEMANTICS = f"""  keep: [state]
  owner: shop
  build:
    - {INSTALL}
  migrate:
    - {MIGRATE}
  deploy:
    - test -f state/seeded.txt
"""
