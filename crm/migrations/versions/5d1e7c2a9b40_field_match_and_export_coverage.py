"""masked fields searchable by exact match; what an export request covers

Revision ID: 5d1e7c2a9b40
Revises: bb57682de393
Create Date: 2026-12-04 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '5d1e7c2a9b40'
down_revision = 'bb57682de393'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('field_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exact_match', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fields', sa.Text(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('ids_sha256', sa.String(length=64), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('export_requests', schema=None) as batch_op:
        batch_op.drop_column('ids_sha256')
        batch_op.drop_column('fields')
    with op.batch_alter_table('field_rules', schema=None) as batch_op:
        batch_op.drop_column('exact_match')
