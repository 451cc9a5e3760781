"""Mask secrets in text that came out of a guest (a service's journal, a deploy's output)
before it lands in a finding, a report or a PR comment.

What is masked (the value becomes ``***``, the name stays so the reader sees what was there):

- ``NAME=value`` where NAME is an environment-style name containing PASSWORD, PASSWD, SECRET,
  TOKEN or KEY (``SHOP_DB_PASSWORD=hunter2``, ``STRIPE_API_KEY=sk_live_…``);
- ``password=…`` / ``"token": "…"`` style pairs (any case) of the same words;
- credentials in URLs (``postgres://user:pass@host`` → ``postgres://user:***@host``);
- ``Bearer …`` / ``Basic …`` authorisation values;
- any further literal ``known`` values (the secret-named variables of the service's unit),
  wherever they appear.

Masking is best effort over untrusted text: it removes what a well-behaved app logs by
mistake, not what a hostile one encodes on purpose.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

MASK = "***"
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY")
MIN_KNOWN = 4            # shorter literal values are not masked everywhere (too many false hits)

_ENV_NAME = r"[A-Z0-9_]*(?:" + "|".join(SECRET_WORDS) + r")[A-Z0-9_]*"
_ENV_PAIR = re.compile(r"\b(" + _ENV_NAME + r")=(\"[^\"]*\"|'[^']*'|[^\s\"',;&]+)")
_WORD_PAIR = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|"
    r"access[_-]?key)[\"']?\s*[=:]\s*[\"']?)([^\s\"',;&}]+)")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)([^\s/@]+)@")
_AUTH = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{4,})")


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def secret_values(environment: str) -> list[str]:
    """The values of secret-named variables in systemd's ``Environment=`` listing
    (``A=1 "B=two words"``), longest first."""
    try:
        words = shlex.split(environment)
    except ValueError:
        words = environment.split()
    values = []
    for word in words:
        name, sep, value = word.partition("=")
        if sep and secret_name(name) and len(value) >= MIN_KNOWN:
            values.append(value)
    return sorted(set(values), key=len, reverse=True)


def mask_secrets(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with the secrets described in the module docstring replaced by ``***``."""
    for value in sorted({v for v in known if len(v) >= MIN_KNOWN}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _ENV_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _WORD_PAIR.sub(lambda m: m.group(1) + MASK, text)
    return _AUTH.sub(lambda m: m.group(1) + m.group(2) + MASK, text)


# -- credentials in git and GitHub messages ----------------------------------------------

_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"gh[pousr]_[A-Za-z0-9_]{16,}"), "***"),                 # GitHub tokens
    (re.compile(r"github_pat_[A-Za-z0-9_]{20,}"), "***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), "***"),   # JWTs
    (re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)\S+"), r"\1***"),
    (re.compile(r"(?i)(x-access-token:)[^@\s/]+"), r"\1***"),
    (re.compile(r"(://)[^/@\s:]+:[^/@\s]+@"), r"\1***@"),                 # user:secret@ in URLs
)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with the given secrets and anything shaped like a GitHub token, a JWT, an
    Authorization header or URL credentials replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pat, repl in _TOKEN_PATTERNS:
        text = pat.sub(repl, text)
    return text
