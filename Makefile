# One command per job. `make test` is what CI runs (.ci/run calls it).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup services lint typecheck check test test-unit test-integration test-system demo bench

setup:
	scripts/bootstrap.sh

services:
	scripts/services.sh

lint:
	.venv/bin/ruff check diffie workers benchmarks tests examples reports

typecheck:
	.venv/bin/mypy diffie workers benchmarks tests examples/__init__.py examples/corpus.py examples/repo_recipe.py

test-unit:
	$(PY) -m pytest -q tests/unit

test-integration:
	$(PY) -m pytest -q tests/integration

test-system:
	$(PY) -m pytest -q tests/system

# Everything CI runs: set up, start services, lint, type-check, all tests.
check test: setup services lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider --durations=30 tests

demo:
	scripts/demo.sh

bench: setup services
	$(PY) -m benchmarks.pixeldiff
	$(PY) -m benchmarks.urlmode
	$(PY) -m benchmarks.vm
	$(PY) -m benchmarks.scale
	$(PY) -m benchmarks.agent
	$(PY) -m benchmarks.deps
	$(PY) -m benchmarks.security
	$(PY) -m benchmarks.architecture
