"""``diffie hook``: the summary an agent reads and the exit codes of the hook convention
(fail 2 on stderr; pass, changed 0 on stdout; Diffie's own error 1)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from diffie.agent_hook import MAX_LINES, SUMMARY_CHARS, exit_code, hook_cwd, summary
from tests.paths import REPO_ROOT


def finding(kind: str, message: str, flow: str, viewport: str = "desktop",
            **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, "flow": flow, "viewport": viewport, **extra}


def test_fail_blocks_changed_and_pass_do_not_and_diffies_error_is_not_the_agents() -> None:
    assert [exit_code(s) for s in ("fail", "changed", "pass", "error", "???")] == [2, 0, 0, 1, 1]


def test_the_summary_groups_findings_and_names_where_and_the_report() -> None:
    verdict = {"status": "fail", "summary": "2 errors, 1 visual change", "findings": [
        finding("console_error", "TypeError: x is undefined", "cart"),
        finding("console_error", "TypeError: x is undefined", "cart", "mobile"),
        finding("visual_change", "home: 3.1% of pixels differ", "home"),
        finding("step_failed", "old failure", "signin", pre_existing=True),
    ]}
    text = summary(verdict, "/data/runs/r/index.html")
    lines = text.splitlines()
    assert lines[0] == "diffie: fail — 2 errors, 1 visual change"
    assert lines[1] == "- [console_error] ×2 cart @ desktop, cart @ mobile: TypeError: x is undefined"
    assert lines[2] == "- [visual_change] home @ desktop: home: 3.1% of pixels differ"
    assert "old failure" not in text                       # pre-existing: not the change's
    assert lines[-1] == "report: /data/runs/r/index.html"


def test_the_summary_is_bounded_whatever_the_app_printed() -> None:
    verdict = {"status": "fail", "summary": "many", "findings": [
        finding("console_error", f"error {i}: " + "\n".join(["x" * 500] * 5), f"flow{i}")
        for i in range(40)]}
    text = summary(verdict, None)
    assert len(text) <= SUMMARY_CHARS
    assert len(text.splitlines()) <= MAX_LINES + 2
    assert "more kind(s) of finding" in text


def test_the_hook_input_gives_the_project_directory() -> None:
    assert hook_cwd(io.StringIO(json.dumps({"cwd": "/p", "hook_event_name": "Stop"}))) == "/p"
    assert hook_cwd(io.StringIO("not json")) is None
    assert hook_cwd(io.StringIO("")) is None
    assert hook_cwd(io.StringIO("[1]")) is None


def _hook(repo: Path, data: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"DIFFIE_DATA_DIR": str(data), "PATH": "/usr/bin:/bin", "HOME": str(data)}
    return subprocess.run([sys.executable, "-m", "diffie.cli", "hook"], cwd=REPO_ROOT,
                          input=stdin or json.dumps({"cwd": str(repo)}), env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def test_the_hook_without_a_vm_run(tmp_path: Path) -> None:
    """The paths that end before a run: nothing uncommitted (0), the change broke its own spec
    (2: the agent can fix it), not a repository (1: not the agent's doing)."""
    repo = tmp_path / "app"
    repo.mkdir()
    (repo / ".diffie.yml").write_text("flows: []\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    clean = _hook(repo, tmp_path / "data")
    assert clean.returncode == 0 and clean.stdout.startswith("diffie: nothing to verify")

    (repo / ".diffie.yml").write_text("flows:\n  - name: x\n    steps:\n      - goto:\n")
    broken = _hook(repo, tmp_path / "data")
    assert broken.returncode == 2, broken.stderr
    assert "the change's spec is invalid" in broken.stderr and ".diffie.yml:4" in broken.stderr

    nowhere = _hook(tmp_path / "none", tmp_path / "data")
    assert nowhere.returncode == 1 and "cannot verify the working tree" in nowhere.stderr
