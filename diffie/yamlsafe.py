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
