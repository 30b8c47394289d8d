"""model_tuning: what each worker measured at preload and chose (issue 10).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 10:20:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_tuning',
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('device', sa.String(length=200), nullable=False),
    sa.Column('choice', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('figures', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('model_id', 'worker')
    )
    op.create_index('ix_model_tuning_fingerprint', 'model_tuning', ['fingerprint', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_model_tuning_fingerprint', table_name='model_tuning')
    op.drop_table('model_tuning')
