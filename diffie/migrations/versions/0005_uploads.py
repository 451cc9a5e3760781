"""Uploads: a repo-mode change may carry its head as a patch or git bundle (diffie.uploads).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:10:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("patch", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("patch_format", sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("patch_format")
        batch.drop_column("patch")
