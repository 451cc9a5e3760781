"""Operations: phase timings and counters for /metrics, a callback URL per run, progress
lines every host can read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "run_phases",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_run_phases_run_id", "run_phases", ["run_id"])
    op.create_index("ix_run_phases_phase", "run_phases", ["phase"])
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "label"),
    )
    op.create_table(
        "run_progress",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("run_id", "seq"),
    )
    op.create_index("ix_run_progress_run_id", "run_progress", ["run_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("callback_sent_at", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("callback_sent_at")
        batch.drop_column("callback_url")
    op.drop_index("ix_run_progress_run_id", table_name="run_progress")
    op.drop_table("run_progress")
    op.drop_table("counters")
    op.drop_index("ix_run_phases_phase", table_name="run_phases")
    op.drop_index("ix_run_phases_run_id", table_name="run_phases")
    op.drop_table("run_phases")
