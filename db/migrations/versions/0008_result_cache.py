"""The result cache (`"reuse": true` in a spec): each succeeded job records a hash of its
canonical spec and its model's revision (`jobs.reuse_key`), indexed per tenant, so a
later identical job of the same tenant finds it with one index probe; a job served from
it names the earlier job (`jobs.reused_from`). See docs/design.md, *The result cache*.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("reuse_key", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("reused_from", UUID(as_uuid=True), nullable=True))
    # Only succeeded jobs carry a key: the index holds what the cache can serve and nothing
    # else (queued and failed rows never enter it).
    op.create_index("ix_jobs_reuse", "jobs", ["tenant_id", "reuse_key"],
                    postgresql_where=sa.text("reuse_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_jobs_reuse", table_name="jobs")
    op.drop_column("jobs", "reused_from")
    op.drop_column("jobs", "reuse_key")
