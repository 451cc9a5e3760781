"""The shape of the code, checked in CI (measured by ``python -m benchmarks.architecture``)."""

from __future__ import annotations

import ast

from benchmarks.architecture import JOB_PATH, ROOT, cycles, graph
from diffie.config import Settings


def test_no_import_cycles_even_through_function_local_imports() -> None:
    edges, _ = graph()
    assert cycles(edges) == []


def test_only_the_composition_root_names_the_real_implementations() -> None:
    """The job, the app context and the workers name no browser, VM or Celery wiring of their
    own: they get them from diffie.composition (tests replace them with diffie.fakes)."""
    edges, _ = graph()
    real = {"diffie.browser", "diffie.browser.runner", "diffie.sandbox.libvirt", "diffie.git_source"}
    for module in ("diffie.pipeline", "diffie.app_context", "diffie.deps", "workers.tasks",
                   "workers.celery_app", "workers.supervisor"):
        assert not edges[module] & real, (module, edges[module] & real)
        assert "diffie.composition" not in edges[module], module
    assert not any(m.startswith("workers") for m in edges["diffie.app_context"])


def test_the_job_path_has_no_function_local_imports() -> None:
    for rel in JOB_PATH:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        local = [node.lineno for fn in ast.walk(tree)
                 if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                 for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)]
        assert local == [], (rel, local)


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    prefix = str(Settings.model_config.get("env_prefix", ""))
    missing = [f"{prefix}{name}".upper() for name in Settings.model_fields
               if f"{prefix}{name}".upper() not in readme]
    assert missing == []


def _project_modules(tree: ast.Module) -> set[str]:
    """Names a test module binds to Diffie's own modules (``from diffie import runs``,
    ``import workers.tasks as tasks``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in ("diffie", "workers"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if (ROOT / (full.replace(".", "/") + ".py")).exists() or \
                        (ROOT / full.replace(".", "/")).is_dir():
                    names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("diffie", "workers"):
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def test_no_test_monkeypatches_diffies_own_modules() -> None:
    """Tests replace parts through the composition root (``with_deps``, shipped fakes, engine
    events), never by patching an attribute of a Diffie module."""
    patched = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = _project_modules(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "setattr" and node.args:
                target = node.args[0]
                if isinstance(target, ast.Name) and target.id in modules or \
                        isinstance(target, ast.Constant) and str(target.value).startswith(
                            ("diffie.", "workers.")):
                    patched.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert patched == []
