"""Every setting is documented: the README's configuration table names each DIFFIE_* variable."""

from __future__ import annotations

import re

from diffie.config import Settings
from tests.paths import REPO_ROOT


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1]
    documented = set(re.findall(r"`(DIFFIE_[A-Z0-9_]+)`", table))
    settings = {"DIFFIE_" + name.upper() for name in Settings.model_fields}
    assert sorted(settings - documented) == []
