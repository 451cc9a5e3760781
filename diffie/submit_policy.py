"""What a remote submitter (the API, MCP over HTTP) may ask a server to verify: URL mode only
for the origins the operator allows, repo mode only for repositories under the places the
operator allows. Decided from the text and the operator's settings alone, before the network,
git or the disk are asked anything (no oracle of what exists or answers on the server).
Local users (``diffie verify``, ``diffie mcp`` on stdio) are not limited by it.
"""

from __future__ import annotations

import os

from diffie.config import Settings
from diffie.errors import InputError
from diffie.git_source import is_url
from diffie.url_mode import is_allowed, strict_origin

URL_MODE_SETTING = "DIFFIE_URL_MODE_ORIGINS"
CALLBACK_SETTING = "DIFFIE_CALLBACK_ORIGINS"
REPO_MODE_SETTING = "DIFFIE_REPO_MODE_SOURCES"


def check_url_origins(settings: Settings, urls: dict[str, str | None]) -> None:
    """URL mode opens the given URLs (``{field: url}``) from the worker: only the origins the
    operator allows. :class:`InputError` naming the field otherwise."""
    for name, url in urls.items():
        _check_origin(name, url, settings.url_mode_origins, setting=URL_MODE_SETTING,
                      purpose="URL mode",
                      off=f"URL mode is off on this server: it verifies only origins the "
                          f"operator allows. Set {URL_MODE_SETTING} (comma-separated "
                          "scheme://host:port) to allow your app's origins, or use repo mode",
                      off_code="url_mode_off")


def _check_origin(name: str, url: str | None, allowed: list[str], *, setting: str,
                  purpose: str, off: str, off_code: str) -> None:
    """``url`` (field ``name``) is a strict http(s) URL whose origin is in ``allowed``;
    :class:`InputError` saying which of the three it is not (``off``: nothing is allowed)."""
    if url is None:
        return
    try:
        origin = strict_origin(url)
    except ValueError as exc:
        raise InputError(name, str(exc)) from None
    if not allowed:
        raise InputError(name, off, off_code, setting=setting)
    if not is_allowed(origin, allowed):
        raise InputError(name, f"origin {origin} is not allowed for {purpose}: the operator "
                         f"allows origins with {setting}", "origin_not_allowed",
                         setting=setting, origin=origin)


def repo_source_allowed(repo: str, sources: list[str]) -> bool:
    """Whether ``repo`` (a URL or a local path) lies in one of the operator's ``sources``: a URL
    under a URL prefix (at a ``/`` boundary), a directory under a local directory (symbolic
    links resolved)."""
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in repo):
        return False
    if is_url(repo):
        for source in sources:
            prefix = source.rstrip("/")
            if is_url(source) and (repo.rstrip("/") == prefix or repo.startswith(prefix + "/")):
                return "/.." not in repo[len(prefix):] and "@" not in repo.split("/")[2]
        return False
    path = os.path.realpath(os.path.expanduser(repo))
    for source in sources:
        if is_url(source):
            continue
        root = os.path.realpath(os.path.expanduser(source))
        if os.path.commonpath([root, path]) == root:
            return True
    return False


def check_repo_source(settings: Settings, repo: str) -> None:
    """:class:`InputError` (``repo``) unless ``repo`` is in a place the operator allows."""
    if not settings.repo_mode_sources:
        raise InputError("repo", f"repo mode is off on this server's API: set "
                         f"{REPO_MODE_SETTING} (comma-separated local directories and URL "
                         "prefixes the API may take repositories from); `diffie verify` on the "
                         "server verifies local repositories directly", "repo_mode_off",
                         setting=REPO_MODE_SETTING)
    if not repo_source_allowed(repo, settings.repo_mode_sources):
        raise InputError("repo", f"this repository is not in a place the operator allows for "
                         f"repo mode ({REPO_MODE_SETTING})", "repo_not_allowed",
                         setting=REPO_MODE_SETTING)


def check_callback(settings: Settings, url: str | None) -> None:
    """A run's ``callback_url`` makes a worker POST to it: only origins the operator allows,
    and only when callbacks are signed (``DIFFIE_CALLBACK_SECRET``)."""
    _check_origin("callback_url", url,
                  settings.callback_origins if settings.callback_secret else [],
                  setting=CALLBACK_SETTING, purpose="callbacks",
                  off=f"callbacks are off on this server: the operator allows them with "
                      f"{CALLBACK_SETTING} (comma-separated scheme://host:port) and "
                      "DIFFIE_CALLBACK_SECRET (their signing key)", off_code="callbacks_off")
