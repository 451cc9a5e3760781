"""The "Diffie" check run of a pull request's head commit: queued → in_progress → completed.

A run waiting for a maintainer gets a check run completed ``action_required`` with an
"Authorize run" button (title ``WAITING_TITLE``). A completed check run cannot go back to
queued on GitHub, so once the run is authorised that one is retired (``neutral``, "Authorized")
and a new check run follows the run.

Every function is idempotent: a check run is found again by its ``external_id`` (the Diffie run
id) before a new one is created, and annotations already on a check run are not sent twice.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from diffie import links
from diffie.config import Settings
from diffie.errors import GitHubError, GitHubUnavailable
from diffie.github.client import GitHubClient, object_id, seg
from diffie.github.summary import CHECK_SUMMARY_LIMIT, status_label, verdict_summary
from diffie.github.webhook_events import APPROVE_IDENTIFIER, AUTHORIZE_IDENTIFIER, CHECK_NAME
from diffie.models import Run
from diffie.text import clip, clip_bytes
from diffie.verdict import CHANGE_KINDS, Finding, Verdict

log = logging.getLogger(__name__)

ANNOTATIONS_PER_REQUEST = 50
MAX_IMAGES = 20
MAX_ANNOTATION_BYTES = 64 * 1024 - 1      # message, raw_details: 64 KB, in UTF-8 bytes
MAX_ANNOTATION_TITLE = 255                # characters

CONCLUSIONS = {
    "pass": "success",
    "changed": "action_required",
    "fail": "failure",
    "error": "neutral",
    "superseded": "cancelled",
    "cancelled": "cancelled",
}

APPROVE_ACTION = {"label": "Approve changes", "identifier": APPROVE_IDENTIFIER,
                  "description": "Accept the visual changes as intended"}
AUTHORIZE_ACTION = {"label": "Authorize run", "identifier": AUTHORIZE_IDENTIFIER,
                    "description": "Run this pull request's code in Diffie"}
WAITING_TITLE = "Waiting for a maintainer to authorize"
AUTHORIZED_TITLE = "Authorized"


def conclusion_for(status: str, *, approved: bool = False) -> str:
    """The check run conclusion for a verdict status (or ``superseded``/``cancelled``)."""
    if status == "changed" and approved:
        return "success"
    try:
        return CONCLUSIONS[status]
    except KeyError:
        raise ValueError(f"no check run conclusion for status {status!r}") from None


@dataclass(frozen=True)
class Target:
    """Where a run's check run lives."""

    installation_id: int
    owner: str
    repo: str
    head_sha: str
    run_id: str
    pr_number: int | None = None

    @classmethod
    def of(cls, run: Run) -> Target:
        ch = run.change
        if (ch is None or ch.installation_id is None or not ch.gh_owner or not ch.gh_repo
                or not ch.head_rev):
            raise GitHubError(f"run {run.id} is not a GitHub pull request change "
                              "(installation_id, gh_owner, gh_repo and head_rev are needed)")
        return cls(ch.installation_id, ch.gh_owner, ch.gh_repo, ch.head_rev, run.id,
                   ch.pr_number)

    @property
    def repo_path(self) -> str:
        return f"/repos/{seg(self.owner)}/{seg(self.repo)}"


def artifact_url(settings: Settings, run_id: str, name: str) -> str:
    """The public, signed URL of one artifact (GitHub fetches check-run images by it)."""
    return links.artifact_url(settings, run_id, name)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- finding / creating ----------------------------------------------------------------------

def _is_waiting(cr: dict[str, Any]) -> bool:
    return (cr.get("output") or {}).get("title") in (WAITING_TITLE, AUTHORIZED_TITLE)


def find_check_run(client: GitHubClient, target: Target, *,
                   waiting: bool | None = None) -> dict[str, Any] | None:
    """Our check run for ``target`` (name Diffie, external_id = run id) if it exists;
    ``waiting`` True/False: only the "Authorize run" one / only another one."""
    for cr in _our_check_runs(client, target):
        if waiting is None or waiting == _is_waiting(cr):
            return cr
    return None


def _our_check_runs(client: GitHubClient, target: Target) -> list[dict[str, Any]]:
    pages = client.paginate(f"{target.repo_path}/commits/{seg(target.head_sha)}/check-runs",
                            installation_id=target.installation_id, key="check_runs",
                            params={"check_name": CHECK_NAME, "filter": "all"})
    return [dict(cr) for cr in pages if isinstance(cr, dict)
            and cr.get("external_id") == target.run_id and cr.get("name") == CHECK_NAME]


def ensure_check_run(client: GitHubClient, run: Run, settings: Settings, *,
                     initial: dict[str, Any] | None = None) -> int:
    """The id of the run's check run, creating it (``queued``, or with ``initial``'s fields)
    when it does not exist yet. Sets ``run.check_run_id`` (the caller commits). An authorised
    run never adopts its retired "Authorize run" check run."""
    if run.check_run_id:
        return run.check_run_id
    target = Target.of(run)
    waiting = True if initial is not None and initial.get("output", {}).get("title") == \
        WAITING_TITLE else (False if run.authorized_by else None)
    found = find_check_run(client, target, waiting=waiting)
    if found is None:
        body = {"name": CHECK_NAME, "head_sha": target.head_sha, "status": "queued",
                "external_id": target.run_id, "details_url": links.fresh_report_url(settings, run.id, None),
                "output": {"title": "Queued", "summary": "Waiting for a worker to verify "
                           "this change in a fresh VM."}}
        body.update(initial or {})
        try:
            created = client.post(f"{target.repo_path}/check-runs",
                                  installation_id=target.installation_id, json=body,
                                  retry_server_errors=False)
        except GitHubUnavailable:
            # the POST may have landed before GitHub failed: look again before a second try
            found = find_check_run(client, target, waiting=waiting)
            if found is None:
                created = client.post(f"{target.repo_path}/check-runs",
                                      installation_id=target.installation_id, json=body)
            else:
                created = found
        found = created
    run.check_run_id = object_id(found, "check run")
    return run.check_run_id


def create_queued(client: GitHubClient, run: Run, settings: Settings) -> int:
    """Router: as soon as the webhook is accepted and the Run row exists."""
    if run.authorized_by:
        retire_waiting(client, run, settings)
    return ensure_check_run(client, run, settings)


def waiting_summary(reason: str | None) -> str:
    return ("Diffie has not run this pull request's code. "
            + (f"{reason[:1].upper()}{reason[1:]}." if reason else "")
            + "\n\nA maintainer (write, maintain or admin permission on the repository) reviews "
            "the change, then clicks **Authorize run** above. The VM image, deploy commands and "
            "allowed origins come from the base branch's `.diffie.yml`; the flows from this "
            "pull request.")


def await_authorization(client: GitHubClient, run: Run, settings: Settings, *,
                        reason: str | None = None) -> int:
    """A waiting run's check run: completed ``action_required`` with "Authorize run"."""
    body: dict[str, Any] = {
        "status": "completed", "conclusion": "action_required", "completed_at": _now(),
        "details_url": links.fresh_report_url(settings, run.id, None),
        "output": {"title": WAITING_TITLE, "summary": waiting_summary(reason)},
        "actions": [AUTHORIZE_ACTION]}
    existing = run.check_run_id
    check_id = ensure_check_run(client, run, settings, initial=body)
    if existing == check_id:                 # an older attempt created it: bring it up to date
        _patch(client, run, settings, body)
    return check_id


def retire_waiting(client: GitHubClient, run: Run, settings: Settings) -> None:
    """The "Authorize run" check run of an authorised run: ``neutral``, no button, saying who
    authorised it (the run goes on in a new check run)."""
    target = Target.of(run)
    who = run.authorized_by or "a maintainer"
    for cr in _our_check_runs(client, target):
        if not _is_waiting(cr) or cr.get("conclusion") != "action_required":
            continue
        client.patch(f"{target.repo_path}/check-runs/{int(cr['id'])}",
                     installation_id=target.installation_id, json={
                         "status": "completed", "conclusion": "neutral", "completed_at": _now(),
                         "output": {"title": AUTHORIZED_TITLE, "summary":
                                    f"Authorized by {who.replace('@', '@' + chr(0x200B))}; "
                                    "the verification goes on in a new check run."},
                         "actions": []})


def _patch(client: GitHubClient, run: Run, settings: Settings, body: dict[str, Any]) -> \
        dict[str, Any]:
    """PATCH the run's check run; a check run deleted on GitHub's side is created again."""
    check_id = ensure_check_run(client, run, settings)
    target = Target.of(run)
    try:
        return dict(client.patch(f"{target.repo_path}/check-runs/{check_id}",
                                 installation_id=target.installation_id, json=body) or {})
    except GitHubError as exc:
        if exc.status != 404 or isinstance(exc, GitHubUnavailable):
            raise
        log.warning("check run %s of run %s is gone; creating a new one", check_id, run.id)
        run.check_run_id = None
        check_id = ensure_check_run(client, run, settings)
        return dict(client.patch(f"{target.repo_path}/check-runs/{check_id}",
                                 installation_id=target.installation_id, json=body) or {})


def mark_in_progress(client: GitHubClient, run: Run, settings: Settings) -> int:
    """Worker: when it starts verifying the run."""
    _patch(client, run, settings, {
        "status": "in_progress", "started_at": _now(),
        "details_url": links.fresh_report_url(settings, run.id, None),
        "output": {"title": "Verifying", "summary": "Restoring a VM snapshot, deploying base "
                   "and head, and driving the browser through the flows."}})
    assert run.check_run_id is not None
    return run.check_run_id


def cancel(client: GitHubClient, run: Run, settings: Settings, *,
           reason: str = "Superseded by a newer push.") -> None:
    """Complete the run's check run as ``cancelled`` (superseded, PR closed, ...), creating it
    when its publish job comes after the cancellation (the pull request's checks still say
    what became of that push)."""
    _patch(client, run, settings, {
        "status": "completed", "conclusion": "cancelled", "completed_at": _now(),
        "output": {"title": "Cancelled", "summary": reason[:CHECK_SUMMARY_LIMIT]}})


# -- output ----------------------------------------------------------------------------------

def title_for(verdict: Verdict, *, approved: bool = False) -> str:
    label = status_label(verdict, approved=approved)
    head = {"pass": "Passed", "changed": "Visual changes to approve", "fail": "Failed",
            "error": "Could not verify", "approved": "Visual changes approved"}.get(label, label)
    n = len(verdict.findings)
    if label in ("changed", "fail", "approved") and n:
        head += f" ({n} finding{'s' if n != 1 else ''})"
    return head[:255]


def images_for(verdict: Verdict, settings: Settings) -> list[dict[str, str]]:
    """Diff images of the visual findings, by public URL (at most MAX_IMAGES)."""
    images: list[dict[str, str]] = []
    for f in verdict.findings:
        if f.kind not in CHANGE_KINDS:
            continue
        pngs = [e for e in f.evidence if e.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))]
        diffs = [e for e in pngs if "diff" in e.lower()] or pngs[:1]
        for name in diffs:
            where = " / ".join(x for x in (f.flow, f.viewport) if x)
            images.append({"alt": f"visual change {where}".strip()[:200],
                           "image_url": artifact_url(settings, verdict.run_id, name),
                           "caption": f.message[:500]})
            if len(images) >= MAX_IMAGES:
                return images
    return images


_PATH_KEYS = ("path", "file", "repo_path")
_URL_KEYS = ("source_url", "url", "source")
_LINE_KEYS = ("line", "line_number", "lineNumber", "start_line")


def _first(details: dict[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if details.get(k) not in (None, ""):
            return details[k]
    return None


def resolve_path(ref: str, repo_files: Collection[str] | None) -> str | None:
    """A repository path for a finding's file reference: itself if it is a repository file,
    or, for a URL such as ``http://host/static/cart.js?v=2``, the one repository file whose path
    ends with the longest part of the URL's path (``.../static/cart.js``)."""
    ref = ref.strip()
    if not ref:
        return None
    if "://" not in ref:
        rel = ref
        while rel.startswith("./"):
            rel = rel[2:]
        if not rel.startswith("/") and (repo_files is None or rel in repo_files):
            return rel if ".." not in rel.split("/") else None
    if repo_files is None:
        return None
    parts = [p for p in urlsplit(ref).path.split("/") if p]
    for start in range(len(parts)):
        suffix = "/".join(parts[start:])
        hits = [p for p in repo_files if p == suffix or p.endswith("/" + suffix)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None       # ambiguous even at the longest suffix: do not guess
    return None


def annotation_for(f: Finding, repo_files: Collection[str] | None = None) -> dict[str, Any] | None:
    """A check-run annotation when the finding names a file and a line in the repository."""
    d = f.details or {}
    line = _first(d, _LINE_KEYS)
    try:
        start = int(line)
    except (TypeError, ValueError):
        return None
    if start < 1:
        return None
    path = None
    ref = _first(d, _PATH_KEYS)
    if isinstance(ref, str):
        path = resolve_path(ref, repo_files)
    if path is None:
        url = _first(d, _URL_KEYS)
        if isinstance(url, str) and repo_files is not None:
            path = resolve_path(url, repo_files)
    if path is None:
        return None
    try:
        end = max(start, int(d.get("end_line", start)))
    except (TypeError, ValueError):
        end = start
    level = "notice" if f.pre_existing else ("warning" if f.kind in CHANGE_KINDS else "failure")
    where = " / ".join(x for x in (f.flow, f.viewport) if x)
    ann: dict[str, Any] = {
        "path": path, "start_line": start, "end_line": end, "annotation_level": level,
        "message": clip_bytes(f.message, MAX_ANNOTATION_BYTES) or f.kind,
        "title": clip(f"{f.kind}" + (f" in {where}" if where else ""), MAX_ANNOTATION_TITLE)}
    col = d.get("column", d.get("column_number", d.get("columnNumber")))
    if start == end and isinstance(col, int) and col >= 1:
        ann["start_column"] = ann["end_column"] = col
    stack = d.get("stack")
    if isinstance(stack, str) and stack:
        ann["raw_details"] = clip_bytes(stack, MAX_ANNOTATION_BYTES)
    return ann


def annotations_for(verdict: Verdict, repo_files: Collection[str] | None = None) -> \
        list[dict[str, Any]]:
    out = []
    for f in verdict.findings:
        ann = annotation_for(f, repo_files)
        if ann is not None:
            out.append(ann)
    return out


def batches(items: Sequence[Any], size: int = ANNOTATIONS_PER_REQUEST) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


# -- completing ------------------------------------------------------------------------------

def complete(client: GitHubClient, run: Run, verdict: Verdict, settings: Settings, *,
             approved: bool = False, repo_files: Collection[str] | None = None) -> str:
    """Complete the run's check run with the verdict's conclusion, summary, images and
    annotations (50 per request; annotations already on the check run are not re-sent).
    Returns the conclusion."""
    conclusion = conclusion_for(verdict.status, approved=approved)
    url = links.fresh_report_url(settings, run.id, verdict.report_url)
    output: dict[str, Any] = {
        "title": title_for(verdict, approved=approved),
        "summary": verdict_summary(verdict, report_url=url, approved=approved,
                                   limit=CHECK_SUMMARY_LIMIT)}
    images = images_for(verdict, settings)
    if images:
        output["images"] = images
    annotations = annotations_for(verdict, repo_files)

    check_id = ensure_check_run(client, run, settings)
    target = Target.of(run)
    already = 0
    if annotations:
        current = client.get(f"{target.repo_path}/check-runs/{check_id}",
                             installation_id=target.installation_id) or {}
        already = int((current.get("output") or {}).get("annotations_count") or 0)
    pending = annotations[already:]
    chunks = list(batches(pending))
    first = chunks[0] if chunks else []
    body: dict[str, Any] = {
        "status": "completed", "conclusion": conclusion, "completed_at": _now(),
        "details_url": url, "output": {**output, **({"annotations": first} if first else {})},
        "actions": [APPROVE_ACTION] if conclusion == "action_required" else []}
    _patch(client, run, settings, body)
    for chunk in chunks[1:]:
        _patch(client, run, settings, {"output": {"title": output["title"],
                                                  "summary": output["summary"],
                                                  "annotations": chunk}})
    return conclusion
