"""Where tests find things: the repository root and ``../shared/fixtures`` beside it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
