"""Many hosts: one API and two worker hosts that share only PostgreSQL, Redis and an
S3-compatible artifact store (a real S3 API server process), a burst of changes, host A's
worker killed mid-run and restarted (benchmarks.hosts). Every run passes, both hosts finished
runs, the killed run was taken again, and the API served every report and screenshot from the
store (it never saw a worker's disk)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.hosts import burst


def test_a_burst_on_two_worker_hosts_loses_nothing(tmp_path: Path, pg_url: str,
                                                  redis_url: str) -> None:
    lines: list[str] = []
    result = burst(tmp_path, database_url=pg_url, redis_url=redis_url, runs=4,
                   say=lines.append)
    assert result.lost == [] and result.problems == [], (result, lines)
    assert result.by_host.get("host-a", 0) > 0 and result.by_host.get("host-b", 0) > 0, result
    assert len(result.retried) >= 1 and result.served == 4 and result.progress == 4
    assert result.store_files >= 4 * 3 and result.store_bytes > 0
    assert (tmp_path / "api" / "data" / "runs").is_dir()    # its cache, fetched from the store
    assert result.ok, result.lines()
