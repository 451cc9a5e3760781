"""GitHub trust: waiting runs (authorised by a maintainer), untrusted heads, who authorised,
delivery body hashes, and the newest head of each pull request (pull_heads).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('pull_heads',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('gh_owner', sa.String(length=200), nullable=False),
    sa.Column('gh_repo', sa.String(length=200), nullable=False),
    sa.Column('pr_number', sa.Integer(), nullable=False),
    sa.Column('head_sha', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('gh_owner', 'gh_repo', 'pr_number')
    )
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('untrusted_head', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('author', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('approval_required', sa.Boolean(),
                                      server_default=sa.false(), nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorized_by', sa.String(length=200), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_deliveries_body_sha256'), ['body_sha256'],
                              unique=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_body_sha256'))
        batch_op.drop_column('body_sha256')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('authorized_by')
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_column('approval_required')
        batch_op.drop_column('author')
        batch_op.drop_column('untrusted_head')
    op.drop_table('pull_heads')
