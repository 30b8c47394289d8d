"""Sweeps: a batch's `sweep` axes, each job's coordinates in it (`jobs.sweep`) and the
item it was expanded from (`jobs.sweep_item`), and the contact sheets built once the
batch ended (`batches.contact_sheets`, NULL until built). A partial index finds the
sweep batches whose sheets are still to build, for the sweeper. See docs/design.md,
*Sweeps and contact sheets*.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("sweep", JSONB, nullable=True))
    op.add_column("batches", sa.Column("contact_sheets", JSONB, nullable=True))
    op.add_column("jobs", sa.Column("sweep", JSONB, nullable=True))
    op.add_column("jobs", sa.Column("sweep_item", sa.Integer(), nullable=True))
    op.create_index("ix_batches_sheets_due", "batches", ["created_at"],
                    postgresql_where=sa.text("sweep IS NOT NULL AND contact_sheets IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_batches_sheets_due", table_name="batches")
    op.drop_column("jobs", "sweep_item")
    op.drop_column("jobs", "sweep")
    op.drop_column("batches", "contact_sheets")
    op.drop_column("batches", "sweep")
