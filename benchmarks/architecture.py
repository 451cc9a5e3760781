"""The code's shape, measured the way a newcomer would: ``python -m benchmarks.architecture``.

- import cycles among ``diffie`` and ``workers`` modules, counting every import that runs
  (module level and inside functions; ``if TYPE_CHECKING:`` blocks excluded): a function-local
  import hides a cycle from Python, not from a reader;
- function-local imports (each one a dependency a reader cannot see at the top of the file);
- the longest function on the worker's job path (``diffie/pipeline.py``, ``workers/tasks.py``);
- how many of the project's modules a webhook → pull-request comment path imports (the
  transitive imports of ``diffie.api.webhooks`` and ``diffie.github.publish``);
- duplicated-line pairs in ``diffie/`` (the ``duplicates`` tool, when installed).

Ends with ``architecture: cycles=<n> local_imports=<n> longest_job_function=<name>:<lines>
webhook_to_comment_modules=<n> duplicate_pairs=<n>``.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("diffie", "workers")
JOB_PATH = ("diffie/pipeline.py", "workers/tasks.py")
WEBHOOK_TO_COMMENT = ("diffie.api.webhooks", "diffie.github.publish")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations/versions" in path.as_posix():
                continue
            found[module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> tuple[set[str], int]:
    """(project modules imported at run time, number of function-local imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    local = 0

    def resolve(base: str) -> str | None:
        while base and base not in modules:
            base = base.rpartition(".")[0]
        return base or None

    def visit(node: ast.AST, in_function: bool) -> None:
        nonlocal local
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            func = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                else:
                    if child.level:
                        pkg = name if is_package else name.rpartition(".")[0]
                        for _ in range(child.level - 1):
                            pkg = pkg.rpartition(".")[0]
                        base = f"{pkg}.{child.module}" if child.module else pkg
                    else:
                        base = child.module or ""
                    # `from pkg import mod` imports mod; `from pkg import name` imports pkg
                    names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                             for alias in child.names]
                hit = False
                for full in names:
                    target = resolve(full)
                    if target and target != name:
                        targets.add(target)
                        hit = True
                if hit and in_function:
                    local += 1
            visit(child, func)

    visit(tree, False)
    return targets, local


def graph() -> tuple[dict[str, set[str]], int]:
    modules = project_modules()
    edges: dict[str, set[str]] = {}
    local_total = 0
    for name, path in modules.items():
        targets, local = imports_of(path, name, modules)
        # importing a.b.c also imports a and a.b: their __init__ runs first
        edges[name] = targets
        local_total += local
    return edges, local_total


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10_000)

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def reachable(edges: dict[str, set[str]], starts: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(edges.get(node, ()))
    return seen


def longest_function(paths: Iterable[str]) -> tuple[str, int]:
    best = ("", 0)
    for rel in paths:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > best[1]:
                    best = (f"{Path(rel).stem}.{node.name}", length)
    return best


def duplicate_pairs() -> int | None:
    tool = shutil.which("duplicates")
    if tool is None:
        return None
    out = subprocess.run([tool, "--most", "200", "--seconds", "120", "--repo", str(ROOT / "diffie")],
                         capture_output=True, text=True, check=False).stdout
    head = re.match(r"(\d+) pairs of places", out)
    return int(head.group(1)) if head else 0


def main() -> int:
    edges, local = graph()
    found = cycles(edges)
    for component in found:
        print("cycle: " + " ↔ ".join(component))
    name, lines = longest_function(JOB_PATH)
    touched = reachable(edges, WEBHOOK_TO_COMMENT)
    dupes = duplicate_pairs()
    print(f"architecture: cycles={len(found)} local_imports={local} "
          f"longest_job_function={name}:{lines} webhook_to_comment_modules={len(touched)} "
          f"duplicate_pairs={'n/a' if dupes is None else dupes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
