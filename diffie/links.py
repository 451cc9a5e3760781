"""The one place that forms links to a run: signed, expiring report and artifact URLs.

Links that go to people (check runs, PR comments, CLI and API output) must work for someone who
has no API token, without opening the API. So they carry their own proof:

    <base>/v1/runs/<run id>/signed/<expires>/<signature>/report/
    <base>/v1/runs/<run id>/signed/<expires>/<signature>/artifacts/<name>

``expires`` is a Unix time; ``signature`` is HMAC-SHA256 (hex) over the run id, the granted
path (``report/`` or ``artifacts/<name>``) and ``expires``, keyed by ``DIFFIE_URL_SIGNING_KEY``.
A ``report/`` signature also covers the files the report links to by relative name
(``report/<name>``), which is why the signature sits in the path, not the query string: a
browser resolves the report's ``<img src="head-home.png">`` under the same signed prefix.

The key: ``DIFFIE_URL_SIGNING_KEY`` when set (give every API and worker process the same one);
otherwise a random key created once in ``<data_dir>/url-signing.key`` (mode 0600) and reused,
so links survive restarts and processes that share the data directory agree. Changing or
deleting the key invalidates every link handed out; an expired link is refreshed by reading
the run again (``GET /v1/runs/{id}``, ``diffie runs show``) or by re-publishing the check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from diffie.config import Settings

KEY_FILE = "url-signing.key"
REPORT = "report/"
_keys: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def signing_key(settings: Settings) -> bytes:
    """The HMAC key: the setting, or the data directory's key file (created on first use)."""
    if settings.url_signing_key:
        return settings.url_signing_key.encode()
    path = (settings.data_dir / KEY_FILE).resolve()
    cache_key = ("file", str(path))
    with _lock:
        key = _keys.get(cache_key)
        if key is None:
            key = _load_or_create(path)
            _keys[cache_key] = key
        return key


def _load_or_create(path: Path) -> bytes:
    """Read the key file, or create it atomically (two processes racing agree on one key)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)                      # fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        raise ValueError(f"{path} holds no usable URL signing key (delete it to make a new one)")
    return text.encode()


def signature(settings: Settings, run_id: str, path: str, expires: int) -> str:
    message = f"diffie-link-v1\n{run_id}\n{path}\n{expires}".encode()
    return hmac.new(signing_key(settings), message, hashlib.sha256).hexdigest()


def expiry(settings: Settings, now: float | None = None) -> int:
    return int(now if now is not None else time.time()) + settings.signed_url_ttl_s


def _base(settings: Settings, base: str | None) -> str:
    return (base if base is not None else settings.public_url).rstrip("/")


def signed_url(settings: Settings, run_id: str, path: str, *, base: str | None = None,
               expires: int | None = None) -> str:
    """``base`` (default DIFFIE_PUBLIC_URL) + the signed path granting ``path`` of the run."""
    exp = expires if expires is not None else expiry(settings)
    sig = signature(settings, run_id, path, exp)
    return (f"{_base(settings, base)}/v1/runs/{quote(run_id, safe='')}/signed/{exp}/{sig}/"
            f"{quote(path, safe='/')}")


def report_url(settings: Settings, run_id: str, *, base: str | None = None,
               expires: int | None = None) -> str:
    """The run's HTML report, signed (trailing slash: the report's relative links resolve
    under it)."""
    return signed_url(settings, run_id, REPORT, base=base, expires=expires)


def artifact_url(settings: Settings, run_id: str, name: str, *, base: str | None = None,
                 expires: int | None = None) -> str:
    """One artifact of the run, signed."""
    return signed_url(settings, run_id, f"artifacts/{name}", base=base, expires=expires)


def api_url(settings: Settings, run_id: str, path: str = "", *, base: str | None = None) -> str:
    """An unsigned API URL of the run (``/v1/runs/<id>/<path>``): needs a bearer token when
    tokens are set. For API clients, not for people."""
    tail = f"/{path}" if path else ""
    return f"{_base(settings, base)}/v1/runs/{quote(run_id, safe='')}{tail}"


def is_own_report_url(settings: Settings, url: str | None) -> bool:
    """Whether ``url`` is a report link this server formed (then it can be signed afresh)."""
    return url is None or url.startswith(f"{_base(settings, None)}/v1/runs/")


def fresh_report_url(settings: Settings, run_id: str, stored: str | None) -> str:
    """The report link to show now: a freshly signed one, unless the verdict carries a report
    URL of another host (a plugin that publishes reports elsewhere), which is kept."""
    if stored and not is_own_report_url(settings, stored):
        return stored
    return report_url(settings, run_id)


class LinkProblem(Exception):
    """A signed link that does not grant access (403): ``str()`` says why."""


def check(settings: Settings, run_id: str, path: str, expires: int, sig: str,
          now: float | None = None) -> None:
    """Raise LinkProblem unless ``sig`` is the signature of (run id, path, expires) and the link
    has not expired. ``path`` is the granted path (``report/`` or ``artifacts/<name>``)."""
    expected = signature(settings, run_id, path, expires)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise LinkProblem("this link is not valid: its signature does not match (the link was "
                          "altered, or signed with another key). Ask for a fresh link: "
                          f"GET /v1/runs/{run_id} with a token, or the check run on GitHub.")
    if (now if now is not None else time.time()) >= expires:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise LinkProblem(f"this link expired at {when}. Ask for a fresh link: "
                          f"GET /v1/runs/{run_id} with a token, or the check run on GitHub.")
