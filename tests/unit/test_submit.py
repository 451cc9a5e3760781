"""Submitting a repo-mode run from the CLI: a bad input names the flag that is wrong (the API
names the field: tests/unit/test_api_runs.py); both use diffie.submit.check_local_repo_change."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffie.cli import main, parser, worker_queues
from diffie.config import Settings
from tests.conftest import make_repo
from tests.unit.test_run_change import APP


def test_the_cli_names_the_flag_of_a_bad_repo_mode_input(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFIE_DATA_DIR", str(tmp_path / "data"))
    repo, (base,) = make_repo(tmp_path, [APP])
    assert main(["verify", "--repo", str(repo), "--base", base, "--head", "no-such-rev"]) == 2
    assert "error: --head: " in capsys.readouterr().err
    assert main(["verify", "--repo", str(repo), "--base", base, "--head", base,
                 "--spec-path", "missing.yml"]) == 2
    assert "error: --spec-path: missing.yml not found" in capsys.readouterr().err


def test_a_worker_takes_runs_and_publish_jobs_unless_told_otherwise() -> None:
    settings = Settings(queue_name="q")
    args = parser().parse_args(["worker"])
    assert worker_queues(settings, args.takes) == ["q", "q.publish"]
    assert worker_queues(settings, "runs") == ["q"]
    assert worker_queues(settings, parser().parse_args(["worker", "--takes", "publish"]).takes) \
        == ["q.publish"]
