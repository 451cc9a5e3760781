"""The one YAML loader for untrusted text (``.diffie.yml``, recipes, corpus manifests).

PyYAML's ``safe_load`` still expands aliases: a 507-byte "billion laughs" document (nine levels
of ``&a [*b, *b, ...]``) builds an object graph whose walk takes hours. Diffie's files never need
anchors, aliases or merge keys, so they are refused outright, naming the line; the nesting depth
(deep ``[[[[...`` would otherwise end in a ``RecursionError``) and the document's size are
bounded too. Parsing uses libyaml when PyYAML has it (the pure-Python parser needs seconds for
a few hundred kilobytes):

1. :func:`compose` scans the event stream for anchors, aliases and depth, then builds the node
   tree (line numbers; callers can check sizes on it before building any object);
2. :func:`construct` turns the node tree into plain data.

:func:`load` does both.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_DEPTH = 64                      # nested mappings/sequences
DEFAULT_MAX_BYTES = 1_000_000

_Loader: type[Any] = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


class Refused(ComposerError):
    """Valid YAML that Diffie does not accept (an anchor, an alias, too deep nesting)."""


def _mark(event: yaml.Event) -> yaml.error.Mark | None:
    """The event's position as a pure-Python mark (libyaml's marks have no snippet)."""
    mark = event.start_mark
    if mark is None:
        return None
    return yaml.error.Mark(str(getattr(mark, "name", "<yaml>")), int(mark.index), int(mark.line),
                           int(mark.column), None, None)  # type: ignore[arg-type]


def _check_events(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise Refused(None, None, f"YAML aliases (*{event.anchor}) are not allowed",
                          _mark(event))
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise Refused(None, None, f"YAML anchors (&{anchor}) are not allowed", _mark(event))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise Refused(None, None, f"nested more than {MAX_DEPTH} levels deep",
                              _mark(event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def compose(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> yaml.Node | None:
    """The node tree of one document (None when empty).

    Raises :class:`yaml.YAMLError` (a :class:`yaml.MarkedYAMLError` with the line where it
    can) for invalid YAML, anchors, aliases, too deep nesting, or more than ``max_bytes``.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise yaml.YAMLError(f"the document is {size:,} bytes, more than the limit of "
                             f"{max_bytes:,}")
    _check_events(text)
    loader = _Loader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def construct(node: yaml.Node) -> Any:
    """Plain data (dicts, lists, scalars) of a node tree from :func:`compose`."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[yaml.Node | None, Any]:
    """:func:`compose` then :func:`construct`: ``(node, data)``; ``(None, None)`` when empty."""
    node = compose(text, max_bytes=max_bytes)
    if node is None:
        return None, None
    return node, construct(node)


# --- where a problem is: line numbers and field names, the same in every file Diffie reads ----

Path_ = tuple[Any, ...]


def line_map(node: yaml.Node | None) -> dict[Path_, int]:
    """The line of every path of the document (``("flows", 1, "steps", 2)``); a mapping key's
    path has the key's own line."""
    lines: dict[Path_, int] = {}

    def walk(n: yaml.Node, path: Path_) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                walk(value_node, (*path, key_node.value))
                lines[(*path, key_node.value)] = key_node.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return lines


def line_for(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path``, or of its nearest ancestor in the document."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def field_name(loc: Path_) -> str:
    """``flows[0].steps[2].click`` of a location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    """(message, line) of a parse error: ``not valid YAML: ...`` or what :func:`compose`
    refused (anchors, depth, size)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "" if isinstance(exc, Refused) else "not valid YAML: "
        return f"{what}{exc.problem or exc}", (mark.line + 1 if mark else None)
    return f"not valid YAML: {exc}", None


def validation_problem(exc: Any) -> tuple[Path_, str]:
    """(location, message) of a pydantic ``ValidationError``'s first error, worded for people:
    ``unknown field 'x'``, ``missing required field 'y'``, "(and N more problem(s))"."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}"
    elif err["type"] == "missing":
        msg = f"missing required field {loc[-1]!r}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem(s))"
    return loc, msg
