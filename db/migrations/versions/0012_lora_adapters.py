"""adapters: LoRA adapters uploaded by tenants (POST /v1/adapters). The file lives in object
storage under adapters/<id>.safetensors; this row says whose it is and which model it was
checked against. Registry adapters are not rows: they live in registry.toml.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'adapters',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('tenant_id', UUID(as_uuid=True), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    )
    op.create_index('ix_adapters_tenant', 'adapters', ['tenant_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_adapters_tenant', table_name='adapters')
    op.drop_table('adapters')
