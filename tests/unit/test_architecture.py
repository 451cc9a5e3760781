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
    real = {"diffie.browser", "diffie.browser.runner", "diffie.sandbox.libvirt", "diffie.source"}
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
