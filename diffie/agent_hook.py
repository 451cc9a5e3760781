"""``diffie hook``: Diffie as a coding agent's hook (Claude Code's ``Stop`` or ``PostToolUse``,
and any runner with the same convention): verify the uncommitted work, and answer the way
agents read hooks.

- **fail** → exit 2 with a short summary on stderr: the agent is blocked and reads why (the
  findings, grouped, each on one line, and where the report is);
- **changed**, **pass** → exit 0 with the summary on stdout (a visual change is for a human or
  the agent to look at, not a reason to block);
- **error** (Diffie could not verify: a deploy Diffie could not run, no VM) → exit 1, the
  reason on stderr: shown to the user, the agent is not blocked by Diffie's trouble;
- nothing uncommitted → exit 0, "nothing to verify".

The hook's JSON input on stdin (when there is one) gives the project's directory (``cwd``) when
``--repo`` is not given. The summary is bounded (:data:`SUMMARY_CHARS`): at most
:data:`MAX_LINES` finding lines, the same kind × message grouped with a count.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, TextIO

from diffie.text import clip, one_line

SUMMARY_CHARS = 1500
MAX_LINES = 8
LINE_CHARS = 160
EXIT = {"pass": 0, "changed": 0, "fail": 2, "error": 1}


def hook_cwd(stdin: TextIO) -> str | None:
    """The ``cwd`` of a hook's JSON input, if stdin is not a terminal and holds one."""
    if stdin.isatty():
        return None
    try:
        data = json.loads(stdin.read(1_000_000) or "null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    cwd = data.get("cwd") if isinstance(data, dict) else None
    return cwd if isinstance(cwd, str) and cwd else None


def summary(verdict: dict[str, Any], report: str | None) -> str:
    """A few lines an agent reads: the status and summary, the findings grouped by kind and
    message (where each was seen), the report."""
    status = str(verdict.get("status", "error"))
    head = f"diffie: {status}"
    text = verdict.get("summary") or verdict.get("reason") or ""
    lines = [f"{head} — {one_line(text, 300)}" if text else head]
    groups: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], list[str]] = {}
    for finding in verdict.get("findings") or []:
        if finding.get("pre_existing"):
            continue
        key = (str(finding.get("kind", "")), one_line(finding.get("message", ""), 120))
        groups[key] += 1
        at = " @ ".join(str(x) for x in (finding.get("flow"), finding.get("viewport")) if x)
        if at and at not in where.setdefault(key, []):
            where[key].append(at)
    for (kind, message), count in groups.most_common(MAX_LINES):
        seen = where.get((kind, message), [])
        places = ", ".join(seen[:3]) + (f" +{len(seen) - 3}" if len(seen) > 3 else "")
        times = f" ×{count}" if count > 1 else ""
        lines.append(one_line(f"- [{kind}]{times} {places}: {message}", LINE_CHARS))
    if len(groups) > MAX_LINES:
        lines.append(f"- … {len(groups) - MAX_LINES} more kind(s) of finding")
    if report:
        lines.append(f"report: {report}")
    return clip("\n".join(lines), SUMMARY_CHARS)


def exit_code(status: str) -> int:
    return EXIT.get(status, 1)
