"""Regenerate the task board's corpus: ``python examples/tasks/changes/regenerate.py``.

Each change is a list of edits to a clean copy of ``examples/tasks`` (text replaced, files
added); a change whose ``npm`` list is set also runs ``npm install`` there so its
``package-lock.json`` moves with ``package.json`` (needs npm and the npm registry). The patch is
``git diff`` of the result. ``manifest.yml`` says what Diffie must answer for each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE.parent
MISSING = "diffie-no-such-package-7f3a"


@dataclass
class Change:
    id: str
    replace: list[tuple[str, str, str]] = field(default_factory=list)   # file, old, new
    add: dict[str, str] = field(default_factory=dict)
    npm: list[str] = field(default_factory=list)                        # npm install ARGS
    lock_edit: bool = False                                              # the missing package


CHANGES = [
    Change("add-dependency-dayjs", replace=[
        ("src/render.js", '// DOM for the board: one list item per task.\n',
         '// DOM for the board: one list item per task.\nimport dayjs from "dayjs";\n'),
        ("src/render.js", '  li.append(title);\n',
         '  li.append(title);\n  const when = document.createElement("time");\n'
         '  when.className = "when";\n  when.textContent = dayjs(task.created_at).format("MMM D");\n'
         '  li.append(when);\n'),
        ("public/style.css", ".mark-done {", ".when { margin-left: auto; margin-right: 12px; "
         "color: #5b6475; font-size: 13px; }\n.mark-done {"),
    ], npm=["dayjs@1.11.10", "--save-exact"]),
    Change("migration-priority", add={
        "migrations/002_priority.sql":
            "ALTER TABLE tasks ADD COLUMN priority integer NOT NULL DEFAULT 2;\n"
            "UPDATE tasks SET priority = 1 WHERE title = 'Review the checkout redesign';\n",
    }, replace=[
        ("server/index.js", '"SELECT id, title, done, created_at FROM tasks ORDER BY done, id")',
         '"SELECT id, title, done, priority, created_at FROM tasks ORDER BY done, priority, id")'),
        ("src/render.js", '  li.append(title);\n',
         '  li.append(title);\n  const badge = document.createElement("span");\n'
         '  badge.className = `priority p${task.priority}`;\n'
         '  badge.textContent = `P${task.priority}`;\n  li.append(badge);\n'),
        ("public/style.css", ".mark-done {", ".priority { margin-left: auto; margin-right: 12px; "
         "font-size: 12px; font-weight: bold; }\n.priority.p1 { color: #b3261e; }\n.mark-done {"),
    ]),
    Change("migration-fails", add={
        "migrations/002_archive.sql":
            "ALTER TABLE tasks ADD COLUMN archived_at timestamptz;\n"
            "CREATE INDEX tasks_archived ON task (archived_at);\n",
    }),
    Change("missing-dependency", lock_edit=True, replace=[
        ("src/render.js", '// DOM for the board: one list item per task.\n',
         f'// DOM for the board: one list item per task.\nimport pad from "{MISSING}";\n'),
    ]),
    Change("build-error", replace=[
        ("src/app.js", "async function markDone(task) {", "async function markDone(task) {{"),
    ]),
    Change("api-500", replace=[
        ("server/index.js", '"SELECT id, title, done, created_at FROM tasks ORDER BY done, id")',
         '"SELECT id, title, done, created_at FROM tasks ORDER BY done, position")'),
    ]),
    Change("page-error-summary", replace=[
        ("src/render.js", "  const open = tasks.filter((t) => !t.done).length;",
         "  const open = tasks.filter((t) => !t.done).length;\n"
         "  const overdue = tasks.filter((t) => t.due < today).length;"),
    ]),
    Change("recolour-header", replace=[
        ("public/style.css", "background: #2b4c7e; color: #fff; }",
         "background: #7e2b5c; color: #fff; }"),
    ]),
    Change("noop-refactor", replace=[
        ("server/index.js", "const title = String((req.body && req.body.title) || \"\").trim();",
         "const title = String(req.body?.title ?? \"\").trim();"),
        ("public/style.css", "* { box-sizing: border-box; }",
         "/* the task board */\n* { box-sizing: border-box; }"),
    ]),
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def edit_lock_for_missing(repo: Path) -> None:
    """package.json and package-lock.json as `npm install` would leave them, had the package
    existed: `npm ci` then asks the registry for it and fails with npm's own 404."""
    pkg_path, lock_path = repo / "package.json", repo / "package-lock.json"
    pkg = json.loads(pkg_path.read_text())
    pkg["dependencies"][MISSING] = "1.0.0"
    pkg_path.write_text(json.dumps(pkg, indent=2) + "\n")
    lock = json.loads(lock_path.read_text())
    lock["packages"][""]["dependencies"][MISSING] = "1.0.0"
    lock["packages"][f"node_modules/{MISSING}"] = {
        "version": "1.0.0", "license": "MIT",
        "integrity": "sha512-" + "A" * 86 + "==",
    }
    lock["packages"] = dict(sorted(lock["packages"].items()))
    lock_path.write_text(json.dumps(lock, indent=2) + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "tasks"
        shutil.copytree(APP, repo, ignore=shutil.ignore_patterns("changes", "node_modules"))
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=r", "-c", "user.email=r@example.com", "commit", "-qm", "base")
        for change in CHANGES:
            for rel, old, new in change.replace:
                path = repo / rel
                text = path.read_text()
                if old not in text:
                    raise SystemExit(f"{change.id}: {old!r} not in {rel}")
                path.write_text(text.replace(old, new, 1))
            for rel, text in change.add.items():
                (repo / rel).write_text(text)
            if change.npm:
                subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                                *change.npm], cwd=repo, check=True, capture_output=True)
            if change.lock_edit:
                edit_lock_for_missing(repo)
            git(repo, "add", "-A")
            (HERE / f"{change.id}.patch").write_text(git(repo, "diff", "--cached"))
            git(repo, "reset", "-q", "--hard")
            git(repo, "clean", "-qfdx")
            print(f"wrote {change.id}.patch")


if __name__ == "__main__":
    main()
