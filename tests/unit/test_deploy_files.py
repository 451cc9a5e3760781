"""What an operator deploys with: the compose file against the compose-spec schema, the CI
snippets in docs/ci.md against GitHub's and GitLab's schemas (check-jsonschema's vendored
copies: no network), the worker host's setup script (idempotent, keeps the operator's env
file) and its systemd unit, the image's contents."""

from __future__ import annotations

import logging
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffie.api import warn_hosts_apart
from diffie.config import Settings
from tests.paths import REPO_ROOT


def schema_check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                           str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_the_compose_file_is_valid_and_runs_the_worker_beside_libvirt() -> None:
    done = schema_check("vendor.compose-spec", REPO_ROOT / "docker-compose.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "postgres", "redis", "flower", "worker"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert name == "flower" or "healthcheck" in service, name
    worker = services["worker"]
    assert worker["network_mode"] == "host" and worker["privileged"] is True
    for volume in worker["volumes"]:
        host, container = volume.split(":")[:2]
        assert host == container or host.startswith("./"), volume    # identical paths
    env = worker["environment"]
    assert env["DIFFIE_BROKER_URL"].startswith("redis://127.0.0.1:")  # host network
    assert "DIFFIE_GITHUB_PRIVATE_KEY_PATH" in env and "DIFFIE_GITHUB_APP_ID" in env
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".diffie-data", ".env"} <= set(ignored)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for package in ("qemu-utils", "libvirt-clients", "debootstrap", "e2fsprogs", "chromium"):
        assert re.search(rf"\b{package}\b", dockerfile), package


@pytest.mark.parametrize(("heading", "schema"), [("## GitHub Actions", "vendor.github-workflows"),
                                                 ("## GitLab CI", "vendor.gitlab-ci")])
def test_the_ci_snippets_are_valid(heading: str, schema: str, tmp_path: Path) -> None:
    text = (REPO_ROOT / "docs" / "ci.md").read_text()
    section = text[text.index(heading):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    snippet = tmp_path / "ci.yml"
    snippet.write_text(block.group(1))
    done = schema_check(schema, snippet)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--junit-out" in block.group(1) and "--ctrf-out" in block.group(1)


def test_the_worker_host_setup_is_idempotent_and_keeps_the_operators_settings(
        tmp_path: Path) -> None:
    script = [str(REPO_ROOT / "scripts" / "setup-worker-host.sh"), "--root", str(tmp_path),
              "--no-packages"]
    first = subprocess.run(script, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / "etc" / "diffie" / "worker.env"
    unit = tmp_path / "etc" / "systemd" / "system" / "diffie-worker.service"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600          # it will hold secrets
    text = unit.read_text()
    assert "@REPO@" not in text and "Restart=always" in text
    assert "EnvironmentFile=/etc/diffie/worker.env" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    binary = exec_start.removeprefix("ExecStart=").split()[0]
    assert binary == str(REPO_ROOT / ".venv" / "bin" / "diffie") and Path(binary).exists()
    env_file.write_text(env_file.read_text() + "DIFFIE_VM_SLOTS=4\n")
    second = subprocess.run(script, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0, second.stderr
    assert "keeping" in second.stderr and "up to date" in second.stderr
    assert env_file.read_text().endswith("DIFFIE_VM_SLOTS=4\n")
    wrong = subprocess.run([*script, "--bogus"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert wrong.returncode == 2 and "unknown option --bogus" in wrong.stderr


def test_hosts_apart_with_local_repositories_get_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="diffie.api"):
        warn_hosts_apart(Settings(artifact_store="s3://runs/p",
                                  repo_mode_sources=["/srv/repos", "https://git.example/"]))
        warn_hosts_apart(Settings(artifact_store="", repo_mode_sources=["/srv/repos"]))
        warn_hosts_apart(Settings(artifact_store="s3://runs/p",
                                  repo_mode_sources=["https://git.example/"]))
    assert len(caplog.records) == 1
    assert "/srv/repos" in caplog.records[0].getMessage()
    assert "https://git.example/" not in caplog.records[0].getMessage()
