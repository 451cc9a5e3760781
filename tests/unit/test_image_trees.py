"""The cached Debian trees an image build starts from: debootstrap of Diffie's base set once per
suite (shared by every recipe), then the recipe's own packages installed by apt in a copy
(debootstrap's ``--include`` cannot resolve virtual packages such as npm's dependencies).
The commands are recorded, not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffie.sandbox import images
from diffie.sandbox.images import Progress
from diffie.sandbox.recipe import BASE_PACKAGES


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.installs: list[tuple[Path, list[str]]] = []

    def run(self, argv: list[str], log: Path, progress: Progress, label: str,
            timeout_s: float) -> None:
        self.commands.append(argv)
        if argv[0] == "debootstrap":
            (Path(argv[-2]) / "etc").mkdir(parents=True)
        elif argv[0] == "cp":
            Path(argv[-1]).mkdir(parents=True)

    def apt(self, tree: Path, packages: list[str], mirror: str, log: Path,
            progress: Progress) -> None:
        self.installs.append((tree, packages))
        (tree / "installed").write_text(" ".join(packages))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def tree(cache: Path, packages: list[str], log: Path, rec: Recorder) -> Path:
    return images._debootstrap_cached(cache, "bookworm", sorted(set(BASE_PACKAGES) | set(packages)),
                                      "http://deb.example/debian", log, lambda _line: None,
                                      run=rec.run, apt=rec.apt)


def test_the_base_layer_is_shared_and_each_package_set_is_its_own_layer(
        recorder: Recorder, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    node = tree(tmp_path, ["nodejs", "npm", "postgresql"], log, recorder)
    assert [c[0] for c in recorder.commands] == ["debootstrap", "cp"]
    (boot,) = [c for c in recorder.commands if c[0] == "debootstrap"]
    assert boot[2] == f"--include={','.join(sorted(BASE_PACKAGES))}"      # no recipe package
    assert (node / "installed").read_text() == "nodejs npm postgresql"    # apt's job, in a copy

    again = tree(tmp_path, ["postgresql", "npm", "nodejs"], log, recorder)          # any order: cached
    assert again == node and len(recorder.commands) == 2

    python = tree(tmp_path, ["python3-psycopg2"], log, recorder)                     # base reused
    assert python != node and [c[0] for c in recorder.commands] == ["debootstrap", "cp", "cp"]
    assert recorder.installs[-1][1] == ["python3-psycopg2"]

    bare = tree(tmp_path, [], log, recorder)                                         # nothing to add
    assert not (bare / "installed").exists() and len(recorder.commands) == 3


def test_an_interrupted_layer_is_made_again(recorder: Recorder, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    tree(tmp_path, [], log, recorder)
    key = images._tree_key("bookworm", sorted(set(BASE_PACKAGES) | {"npm"}))
    (tmp_path / ".trees" / f"{key}.tmp" / "half").mkdir(parents=True)     # a killed build's
    done = tree(tmp_path, ["npm"], log, recorder)
    assert done.name == key and not (tmp_path / ".trees" / f"{key}.tmp").exists()
    assert not (done / "half").exists()
