"""The services of one app: a front end, an API, ... each on its own guest port.

A spec's ``sandbox.services`` names them (``sandbox.port`` / ``ready_path`` are the shorthand
of one service named ``app``); the first is the default one. A flow says which service its
``goto`` paths, ``expect_url`` and session cookies go to (``service: api``; default the first),
and a ``goto`` step may name another. After the deploy each service answers on a host port:
:class:`ServiceUrls` maps their names to those URLs, every one of them an app origin of the
side's browser (:class:`diffie.origins.OriginPolicy`). URL mode has one URL per side: the
default service only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

DEFAULT_SERVICE = "app"           # the name of the one service of ``port`` / ``ready_path``
SERVICE_NAME = r"^[a-z][a-z0-9-]{0,30}$"
MAX_SERVICES = 8
ENV_PREFIX = "DIFFIE_SERVICE_URL_"


@dataclass(frozen=True)
class Service:
    """One service as the deploy and the browser use it (defaults resolved)."""

    name: str
    port: int                     # in the guest
    ready_path: str
    ready_timeout_s: float


def env_name(service: str) -> str:
    """The deploy commands' variable holding ``service``'s URL: ``DIFFIE_SERVICE_URL_API``
    (upper case, ``-`` → ``_``)."""
    return ENV_PREFIX + service.upper().replace("-", "_")


class ServiceUrls(Mapping[str, str]):
    """Where one side's services answer: name → host-reachable URL, in the spec's order (the
    first is the default service)."""

    def __init__(self, urls: Mapping[str, str]) -> None:
        if not urls:
            raise ValueError("a side has at least one service")
        for name in urls:
            if not re.match(SERVICE_NAME, name):
                raise ValueError(f"not a service name: {name!r}")
        self._urls = dict(urls)

    @classmethod
    def of(cls, urls: str | ServiceUrls, default: str = DEFAULT_SERVICE) -> ServiceUrls:
        """``urls`` as is, or one URL as the only service (named ``default``): what a side
        without several services (URL mode, an older deployer) has."""
        return urls if isinstance(urls, ServiceUrls) else cls({default: urls})

    def __getitem__(self, name: str) -> str:
        return self._urls[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._urls)

    def __len__(self) -> int:
        return len(self._urls)

    def __repr__(self) -> str:
        return f"ServiceUrls({self._urls!r})"

    @property
    def default_name(self) -> str:
        return next(iter(self._urls))

    @property
    def base_url(self) -> str:
        """The default service's URL (what a side had before it could have several)."""
        return self._urls[self.default_name]

    def resolve(self, name: str | None) -> str | None:
        """The URL of service ``name`` (None: the default one); None when this side has no such
        service (the other side's revision may name services this one does not have)."""
        return self._urls.get(name or self.default_name)

    def env(self) -> dict[str, str]:
        """The deploy commands' environment: ``DIFFIE_SERVICE_URL_<NAME>`` of every service."""
        return {env_name(name): url for name, url in self._urls.items()}

    def describe(self) -> str:
        """``web http://127.0.0.1:47100, api http://127.0.0.1:47101`` (one service: its URL)."""
        if len(self._urls) == 1:
            return self.base_url
        return ", ".join(f"{name} {url}" for name, url in self._urls.items())
