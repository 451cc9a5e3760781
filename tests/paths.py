"""Where tests find things: the repository root and the vendored fixtures (tests/fixtures)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
