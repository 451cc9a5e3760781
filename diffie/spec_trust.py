"""Which spec a repo-mode or GitHub run uses, read from its checkouts.

- :func:`read_spec`: a revision's ``.diffie.yml``, read without following symbolic links
  (:mod:`diffie.treefile`); None when the revision has none.
- :func:`merge_untrusted`: for a head that is not trusted (a fork, a first-time contributor:
  :func:`diffie.github.trust.untrusted_head`) only what to look at comes from the head — its
  ``flows`` and ``viewports``. What runs and what the browser may reach comes from the base
  revision, which a maintainer merged: the ``sandbox`` section (VM image, deploy commands,
  port, readiness), ``allowed_origins``, and the rest (``timeout_ms``, ``masks``,
  ``session_cookies``, ``noise_floor``).
- :func:`run_spec`: the one of the two a run uses, with a clear error when it cannot have one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from diffie.errors import RunError, SpecError
from diffie.spec import Spec, parse_spec
from diffie.spec_limits import SpecLimits, first_excess
from diffie.treefile import read_tree_file

HEAD_FIELDS = ("flows", "viewports")


def read_spec(tree: Path, rel: str, *, limits: SpecLimits, side: str) -> Spec | None:
    """The spec at ``tree/rel`` (None when missing); links are refused, not followed."""
    raw = read_tree_file(tree, rel, max_bytes=limits.max_spec_bytes, side=side)
    if raw is None:
        return None
    if len(raw) > limits.max_spec_bytes:
        raise SpecError(f"the spec is more than the limit of {limits.max_spec_bytes:,} bytes "
                        "(DIFFIE_MAX_SPEC_BYTES)", file=rel, line=1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text ({exc.reason} at byte {exc.start})",
                        file=rel) from exc
    try:
        return parse_spec(text, file=rel, limits=limits)
    except SpecError as exc:
        if side == "head":
            raise
        # the base's spec matters only for an untrusted head: say whose spec is wrong
        raise SpecError(f"{exc.reason} (in the base revision's spec, whose sandbox an "
                        "untrusted pull request uses)", file=rel, line=exc.line,
                        field=exc.field) from exc


def merge_untrusted(base: Spec, head: Spec, *, limits: SpecLimits | None = None,
                    file: str = ".diffie.yml") -> Spec:
    """The head's flows and viewports, everything else from the base (see the module)."""
    data = base.model_dump(exclude={"flows", "viewports"})
    if base.sandbox is not None:
        # as written: ``services`` and an explicit ``port`` do not go together
        data["sandbox"] = base.sandbox.model_dump(exclude_unset=True)
    data.update(flows=[f.model_dump() for f in head.flows],
                viewports={k: v.model_dump() for k, v in head.viewports.items()})
    try:
        merged = Spec.model_validate(data)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise SpecError(f"the head's flows do not fit the base's spec ({msg}); a pull request "
                        "that is not trusted takes its flows and viewports from its own spec "
                        "and everything else (sandbox, allowed_origins, session_cookies, "
                        "masks, timeouts) from the base branch's", file=file) from None
    excess = first_excess(merged, limits or SpecLimits())
    if excess is not None:
        raise SpecError(excess.message, file=file, field=excess.field)
    return merged


def run_spec(base_tree: Path, head_tree: Path, rel: str, *, limits: SpecLimits,
             untrusted_head: bool, head_label: str, base_label: str) -> Spec:
    """The spec a run uses: the head's own, or (``untrusted_head``) the merge of the base's
    sandbox and the head's flows."""
    head = read_spec(head_tree, rel, limits=limits, side="head")
    if head is None:
        raise RunError(f"{rel} not found at head {head_label}: the head revision needs a "
                       "Diffie spec")
    if not untrusted_head:
        return head
    base = read_spec(base_tree, rel, limits=limits, side="base")
    if base is None:
        raise RunError(f"{rel} not found at base {base_label}: this pull request is not trusted "
                       "(a fork or a first-time contributor), so its VM image, deploy commands "
                       "and allowed origins come from the base branch's spec, and the base has "
                       f"none. Merge a {rel} with a 'sandbox' section into the base branch first")
    if base.sandbox is None:
        raise RunError(f"{rel} at base {base_label} has no 'sandbox' section: this pull request "
                       "is not trusted, so its VM image and deploy commands come from the base "
                       "branch's spec")
    return merge_untrusted(base, head, limits=limits, file=rel)
