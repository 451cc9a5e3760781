"""Approvals: visual changes approved once stay approved for their subject (by fingerprint).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 10:50:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('approvals',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('finding_id', sa.String(length=32), nullable=False),
    sa.Column('approved_by', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('subject', 'fingerprint')
    )
    op.create_index(op.f('ix_approvals_subject'), 'approvals', ['subject'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_approvals_subject'), table_name='approvals')
    op.drop_table('approvals')
