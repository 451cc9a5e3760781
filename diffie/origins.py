"""Web origins: which URL belongs to which origin, which origins a change may allow, and the
policy of one side's browser (its app origins, one per service of the app, plus the allowed
ones). Pure logic, no browser: the spec validates with it, :mod:`diffie.browser.confine`
enforces it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_WEB_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}$")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".corp", ".intranet")


class _ProxyServer(Protocol):
    @property
    def server(self) -> str: ...


class OriginError(ValueError):
    """An origin written in a spec or a setting that Diffie will not allow."""


@dataclass(frozen=True)
class Origin:
    scheme: str          # http or https (ws/wss map to them)
    host: str            # lower case; IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme]
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def bypass_rule(self) -> str:
        """Chromium proxy-bypass rule for exactly this host and port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The web origin of ``url`` (ws/wss count as http/https), or None for anything that is
    not an http(s)/ws(s) URL with a host (``file:``, ``data:``, ``about:``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        scheme = _WEB_SCHEMES.get(parts.scheme.lower())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    if scheme is None or not host:
        return None
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def parse_third_party_origin(text: str) -> Origin:
    """An origin a spec may allow besides the app: ``https://fonts.example.com`` (no path, no
    credentials), a public DNS name. Loopback, private, link-local and other local addresses and
    names are refused: the spec is untrusted, and these are where the host's secrets live."""
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"{text!r} is not an origin ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise OriginError(f"{text!r}: an allowed origin is http:// or https:// + host[:port]")
    if parts.username or parts.password or "@" in parts.netloc:
        raise OriginError(f"{text!r}: an allowed origin has no user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OriginError(f"{text!r}: an allowed origin has no path, query or fragment")
    host = (parts.hostname or "").lower()
    try:
        ipaddress.ip_address(host)
        raise OriginError(f"{text!r}: an allowed origin is named by a public DNS name, not an IP "
                          "address")
    except ValueError:
        pass
    if (not _HOSTNAME.match(host) or host == "localhost" or host.endswith(_LOCAL_SUFFIXES)):
        raise OriginError(f"{text!r}: {host!r} is not a public DNS name (local, single-label and "
                          "internal names are refused)")
    return Origin(parts.scheme, host, port if port is not None else _DEFAULT_PORTS[parts.scheme])


@dataclass
class OriginPolicy:
    """Where one side's browser may go: its app origins (the default service's, ``app``, and
    the other services' of the side, ``services``) plus allowed third-party origins."""

    app: Origin
    allowed: tuple[Origin, ...] = ()
    # what the route fence blocked, for the recorder (method + url), bounded
    blocked: list[str] = field(default_factory=list)
    # every app origin of the side, ``app`` first (empty: ``app`` alone)
    services: tuple[Origin, ...] = ()

    @classmethod
    def for_app(cls, base_url: str | Sequence[str], spec_allowed: Iterable[str] = (),
                operator_allowed: Iterable[str] = ()) -> OriginPolicy:
        """``base_url``: the app's URL, or the URLs of each of its services (the default one
        first), all of them the side's own (the VM's forwarded ports, or a URL-mode
        deployment). ``spec_allowed`` comes from the change (untrusted: public DNS names
        only); ``operator_allowed`` from the operator's settings (any http(s) origin)."""
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        apps: list[Origin] = []
        for url in urls:
            origin = origin_of(url)
            if origin is None:
                raise OriginError(f"the app's URL {url!r} is not an http(s) URL with a host")
            apps.append(origin)
        if not apps:
            raise OriginError("the app has no URL")
        allowed = [parse_third_party_origin(o) for o in spec_allowed]
        for text in operator_allowed:
            origin = origin_of(text)
            if origin is None:
                raise OriginError(f"DIFFIE_BROWSER_ALLOWED_ORIGINS: {text!r} is not an http(s) "
                                  "origin")
            allowed.append(origin)
        return cls(app=apps[0], allowed=tuple(dict.fromkeys(allowed)),
                   services=tuple(dict.fromkeys(apps)))

    @property
    def app_origins(self) -> tuple[Origin, ...]:
        """Every app origin of the side, the default service's first."""
        return self.services or (self.app,)

    @property
    def app_label(self) -> str:
        """How messages name the app's origin(s): ``http://127.0.0.1:47100`` or
        ``origins http://127.0.0.1:47100, http://127.0.0.1:47101``."""
        apps = self.app_origins
        return f"origin {apps[0]}" if len(apps) == 1 else \
            f"origins {', '.join(str(o) for o in apps)}"

    def is_app(self, url: str) -> bool:
        """Whether ``url`` is on one of the side's own (service) origins."""
        origin = origin_of(url)
        return origin is not None and origin in self.app_origins

    def allows(self, url: str) -> bool:
        origin = origin_of(url)
        return origin is not None and (origin in self.app_origins or origin in self.allowed)

    def proxy(self, dead: _ProxyServer) -> dict[str, str]:
        """Playwright's per-context proxy setting: everything but the app's and the allowed
        origins goes to the dead proxy and fails there."""
        rules = [*(o.bypass_rule for o in self.app_origins), *(o.bypass_rule for o in self.allowed)]
        return {"server": dead.server, "bypass": ",".join(dict.fromkeys(rules))}


def check_navigation(policy: OriginPolicy, url: str) -> str | None:
    """Why a step may not navigate to ``url`` (None when it may: any of the side's service
    origins, or an allowed one)."""
    if policy.allows(url):
        return None
    return f"{url[:300]!r} is outside the app's {policy.app_label} and the allowed origins"
