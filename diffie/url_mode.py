"""URL-mode origins: strict parsing of ``base_url``/``head_url`` and the operator's allow-list.

URL mode makes the worker (its HTTP client and its browser) open whatever URL a caller gives.
Through the API that is only allowed for the origins listed in ``DIFFIE_URL_MODE_ORIGINS``, so
the API can be neither a port scanner of the worker's network nor a proxy into it.

The check is only sound if Diffie, httpx and Chromium read the same host and port from a URL,
so URLs are parsed strictly: ``http``/``https``, a plain host name or IP literal and an optional
port — no user info (``user@``), no backslash, no percent-encoding, no spaces or control
characters in the URL. A URL that another parser might read differently is refused, never
guessed at. Matching is on the exact canonical origin (``http://127.0.0.1:8001``: lower-case,
the default port written out), so an alternative spelling of an allowed host is refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_PORT = "*"
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}"
                   r"[a-z0-9])?)*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_NETLOC = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}|\*))?$")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def strict_origin(url: str, *, allow_any_port: bool = False) -> str:
    """The canonical origin of ``url`` (``scheme://host:port``); ValueError saying what is wrong
    when the URL is not a plain http(s) URL (see the module docstring)."""
    if _UNSAFE.search(url):
        raise ValueError("must not contain spaces, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL with a host")
    if not url[len(parts.scheme):].startswith("://"):
        raise ValueError("must be an http:// or https:// URL with a host")
    match = _NETLOC.match(parts.netloc)
    if match is None:
        if "@" in parts.netloc:
            raise ValueError("must not carry a user name or password (user@host)")
        raise ValueError("must have a plain host name or IP address and an optional port")
    host = match.group("host").lower()
    if not (_HOST.match(host) or _IPV6.match(host)):
        raise ValueError(f"has an invalid host {host!r}")
    port_text = match.group("port")
    if port_text == ANY_PORT:
        if not allow_any_port:
            raise ValueError("must have a numeric port")
        return f"{scheme}://{host}:{ANY_PORT}"
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ValueError(f"has an invalid port {port}")
    return f"{scheme}://{host}:{port}"


def parse_allowed(entries: Iterable[str]) -> list[str]:
    """Canonical forms of ``DIFFIE_URL_MODE_ORIGINS`` entries (``scheme://host:port``; ``*`` as
    the port allows every port of that host). ValueError naming the bad entry."""
    out: list[str] = []
    for i, entry in enumerate(entries, 1):
        text = entry.strip().rstrip("/")
        try:
            origin = strict_origin(text, allow_any_port=True)
        except ValueError as exc:
            raise ValueError(f"DIFFIE_URL_MODE_ORIGINS entry {i} ({entry!r}) {exc}") from None
        if urlsplit(text).path:
            raise ValueError(f"DIFFIE_URL_MODE_ORIGINS entry {i} ({entry!r}) must be an origin "
                             "(scheme://host:port), without a path")
        out.append(origin)
    return out


def is_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether the canonical ``origin`` is in the allow-list (exactly, or by a ``:*`` entry)."""
    any_port = origin.rsplit(":", 1)[0] + ":" + ANY_PORT
    return any(entry in (origin, any_port) for entry in allowed)
