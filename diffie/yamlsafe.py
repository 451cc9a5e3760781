"""The one YAML loader for untrusted text (``.diffie.yml``, recipes, corpus manifests).

PyYAML's ``safe_load`` still expands aliases: a 507-byte "billion laughs" document (nine levels
of ``&a [*b, *b, ...]``) builds an object graph whose walk takes hours. Diffie's files never need
anchors, aliases or merge keys, so :func:`load` refuses them outright, naming the line; it also
bounds the nesting depth (deep ``[[[[...`` would otherwise end in a ``RecursionError``) and the
document's size. The document is composed once: the node tree (for line numbers) and the plain
data built from it are returned together.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_DEPTH = 64                      # nested mappings/sequences
DEFAULT_MAX_BYTES = 1_000_000


class Refused(ComposerError):
    """Valid YAML that Diffie does not accept (an anchor, an alias, too deep nesting)."""


def _mark(event: yaml.Event) -> yaml.error.Mark | None:
    mark = event.start_mark
    return mark if isinstance(mark, yaml.error.Mark) else None


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors and aliases and bounds nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise Refused(None, None, f"YAML aliases (*{event.anchor}) are not allowed",
                                _mark(event))
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise Refused(None, None, f"YAML anchors (&{anchor}) are not allowed",
                                _mark(event))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise Refused(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    _mark(event))
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def load(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[yaml.Node | None, Any]:
    """Compose and construct one document: ``(node, data)``; ``(None, None)`` when empty.

    Raises :class:`yaml.YAMLError` (a :class:`yaml.MarkedYAMLError` with the line where it
    can) for invalid YAML, anchors, aliases, too deep nesting, or more than ``max_bytes``.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise yaml.YAMLError(f"the document is {size:,} bytes, more than the limit of "
                             f"{max_bytes:,}")
    loader = _NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        return node, loader.construct_document(node)
    finally:
        loader.dispose()
