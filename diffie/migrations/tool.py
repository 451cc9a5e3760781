"""Developer tool: ``python -m diffie.migrations.tool revision -m MSG`` autogenerates a revision
against the models; ``python -m diffie.migrations.tool`` upgrades the configured database."""

from __future__ import annotations

import sys

from alembic import command

from diffie.migrations import alembic_config, current_revision, upgrade


def _main(argv: list[str]) -> int:
    """``python -m diffie.migrations.tool revision -m MSG`` (autogenerate) or ``upgrade``."""
    from diffie.config import Settings
    from diffie.db import make_engine

    engine = make_engine(Settings().resolved_database_url())
    if argv[:1] == ["revision"]:
        message = argv[argv.index("-m") + 1] if "-m" in argv else "change"
        upgrade(engine)
        with engine.connect() as conn:
            command.revision(alembic_config(conn), message=message, autogenerate=True)
        return 0
    upgrade(engine)
    print(current_revision(engine))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
