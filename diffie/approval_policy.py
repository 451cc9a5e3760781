"""The words of ``DIFFIE_GITHUB_REQUIRE_APPROVAL[_BY]`` (a leaf module: Settings validates them
here, :mod:`diffie.github.trust` applies them)."""

from __future__ import annotations

import re

POLICIES = ("forks", "first-time", "all", "none")
SETTING = "DIFFIE_GITHUB_REQUIRE_APPROVAL"
OVERRIDES_SETTING = "DIFFIE_GITHUB_REQUIRE_APPROVAL_BY"

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,100}(/[A-Za-z0-9_.-]{1,100})?$")


def parse_overrides(text: str) -> dict[str, str]:
    """``OWNER=POLICY,OWNER/REPO=POLICY`` as a dict with lower-case keys; a clear ValueError
    naming the entry otherwise."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, sep, policy = (p.strip() for p in entry.partition("="))
        if not sep or not _KEY.match(key):
            raise ValueError(f"{OVERRIDES_SETTING}: {entry!r} is not OWNER=POLICY or "
                             "OWNER/REPO=POLICY")
        if policy not in POLICIES:
            raise ValueError(f"{OVERRIDES_SETTING}: {entry!r}: the policy must be one of "
                             f"{', '.join(POLICIES)}")
        out[key.lower()] = policy
    return out
