"""The CLI as a client of a shared Diffie (``--server URL --token T``, or ``DIFFIE_SERVER`` and
``DIFFIE_TOKEN``): the same commands over the API instead of this machine's database and
broker. Progress comes from the run's server-sent events; the server's answers are turned
back into Diffie's errors so ``--json`` prints the same error objects as locally (a spec
error keeps its file, line and field).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from diffie.errors import ConfigError, DiffieError, InputError, RunTimeout, Unavailable
from diffie.models import FINISHED

SERVER_ENV = "DIFFIE_SERVER"
TOKEN_ENV = "DIFFIE_TOKEN"
REQUEST_TIMEOUT_S = 30.0
STREAM_READ_S = 40.0             # the server sends at least a keep-alive every 15 s
Say = Callable[[str], None]


@dataclass(frozen=True)
class Remote:
    server: str
    token: str | None

    @classmethod
    def from_args(cls, server: str | None, token: str | None) -> Remote | None:
        """The server the CLI talks to (flags first, then the environment), or None: local."""
        url = (server or os.environ.get(SERVER_ENV) or "").strip()
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise InputError("server", f"{url!r} is not an http(s) URL of a Diffie server")
        return cls(url.rstrip("/"), (token or os.environ.get(TOKEN_ENV) or "").strip() or None)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return httpx.request(method, f"{self.server}{path}", headers=self._headers(),
                                 timeout=kwargs.pop("timeout", REQUEST_TIMEOUT_S), **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the Diffie server {self.server} "
                              f"({type(exc).__name__}: {exc}); check --server / {SERVER_ENV}"
                              ) from None

    def request(self, method: str, path: str, *, answers: tuple[int, ...] = (),
                **kwargs: Any) -> Any:
        """One API call; its JSON (a status >= 400 listed in ``answers`` is an answer too), or
        the Diffie error its answer stands for."""
        resp = self._send(method, path, **kwargs)
        if resp.status_code >= 400 and resp.status_code not in answers:
            raise error_of_response(resp, self.server)
        return resp.json()

    # --- the commands' operations -------------------------------------------------------

    def artifact(self, run_id: str, name: str) -> bytes | None:
        """One artifact of a run (None: the run has no such file)."""
        resp = self._send("GET", f"/v1/runs/{run_id}/artifacts/{name}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise error_of_response(resp, self.server)
        return resp.content

    def ready(self) -> dict[str, Any]:
        """The server's ``/ready`` answer (ready or not: 200 and 503 both carry it)."""
        body: dict[str, Any] = self.request("GET", "/ready", answers=(503,))
        return body

    def submit(self, body: dict[str, Any]) -> str:
        return str(self.request("POST", "/v1/runs", json=body)["id"])

    def snapshot(self, run_id: str) -> dict[str, Any]:
        """The run in :func:`diffie.submit.snapshot`'s shape (``report`` is the report's URL)."""
        run = self.request("GET", f"/v1/runs/{run_id}")
        verdict = run.get("verdict") or None
        return {"id": run["id"], "status": run["status"], "phase": run["phase"],
                "reason": run.get("reason"), "verdict_status": run.get("verdict_status"),
                "verdict": verdict, "attempts": run.get("attempts", 0),
                "mode": (run.get("change") or {}).get("mode"),
                "report": (verdict or {}).get("report_url") or run["links"]["report"]}

    def wait(self, run_id: str, *, timeout_s: float, say: Say) -> dict[str, Any]:
        """Follow the run's events until it finishes (reconnecting where it left off);
        its snapshot then. :class:`RunTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last_id = 0
        while time.monotonic() < deadline:
            try:
                finished, last_id = self._follow(run_id, last_id, deadline, say)
            except (httpx.TransportError, httpx.StreamError):
                finished = False                      # reconnect from last_id
                time.sleep(1.0)
            if finished:
                return self.snapshot(run_id)
        snap = self.snapshot(run_id)
        if snap["status"] in FINISHED:
            return snap
        raise RunTimeout(f"run {run_id} did not finish within {timeout_s:.0f} s "
                         f"(it is {snap['status']}: {snap['phase']})")

    def _follow(self, run_id: str, last_id: int, deadline: float,
                say: Say) -> tuple[bool, int]:
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = str(last_id)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=STREAM_READ_S)
        with httpx.stream("GET", f"{self.server}/v1/runs/{run_id}/events", headers=headers,
                          timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise error_of_response(resp, self.server)
            kind, data, event_id = "", "", None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line == "" and kind:
                    if event_id and event_id.isdigit():
                        last_id = int(event_id)
                    done = self._event(run_id, kind, data, say)
                    if done:
                        return True, last_id
                    kind, data, event_id = "", "", None
                if time.monotonic() > deadline:
                    return False, last_id
        return False, last_id

    @staticmethod
    def _event(run_id: str, kind: str, data: str, say: Say) -> bool:
        try:
            payload = json.loads(data)
        except ValueError:
            return False
        if kind == "progress":
            say(str(payload.get("line", "")))
        elif kind == "status":
            say(f"run {run_id[:8]} {payload.get('status')}: {payload.get('phase')}")
        return kind == "verdict"


def error_of_response(resp: httpx.Response, server: str) -> DiffieError:
    """The Diffie error an API answer of 400 or more stands for."""
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    if resp.status_code in (401, 403):
        return ConfigError(f"the Diffie server {server} refused the request ({resp.status_code}"
                           f"{': ' + str(detail)[:300] if detail else ''}): give a token with "
                           f"the needed scope (--token or {TOKEN_ENV})")
    if resp.status_code == 422 and isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {}
        loc = [str(x) for x in first.get("loc") or [] if x not in ("body", "query", "header")]
        ctx = {k: v for k, v in (first.get("ctx") or {}).items()
               if k in ("file", "line", "field") and v is not None}
        return InputError(loc[0] if loc else "request", str(first.get("msg", "invalid"))[:1000],
                          str(first.get("type", "value_error")), **ctx)
    text = str(detail)[:1000] if detail else f"HTTP {resp.status_code}"
    if resp.status_code == 404:
        return InputError("run_id", text, code="not_found")
    if resp.status_code in (409, 413, 422):
        return InputError("run_id" if resp.status_code == 409 else "request", text)
    return Unavailable(f"the Diffie server {server} answered {resp.status_code}: {text}")
