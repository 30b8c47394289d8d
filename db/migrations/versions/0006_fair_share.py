"""Fair share and quotas per tenant: per-tenant overrides of the weight and the limits, the
virtual time that fair-share claims charge, the submission counter of the rate limit, and
a claim index that reaches each tenant's queued jobs of a signature.

- ``tenant_limits``: what an admin set with ``fresco tenants set`` (NULL: the setting's
  default, FRESCO_TENANT_*). Read by the API on submission and by every claim.
- ``tenant_usage``: ``vtime``, the work a tenant has been served divided by its weight
  (jobs / weight); a claim serves the tenant with the lowest. Written by claims (one row
  per claimed group) and by submissions (a tenant that becomes active starts at the
  current minimum, not at the zero it was left at). Its own table: it is written on every
  claim, and ``tenants`` is read on every request.
- ``tenant_submissions``: submissions counted in the current minute (a fixed window).
  Its row is locked by each submission of the tenant until that submission commits, which
  also makes the queued-jobs limit exact: a tenant's submissions are counted one at a time.
- ``ix_jobs_claim`` becomes (signature, tenant_id, priority DESC, seq): the heads of each
  tenant's queued jobs of one signature, one index probe per (tenant, priority), and a
  tenant's jobs of one priority in FIFO order. ``ix_jobs_tenant_queued`` counts a tenant's
  queued jobs for FRESCO_TENANT_MAX_QUEUED (stopping at the limit).

See docs/design.md, *Fair share and quotas*.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

QUEUED_ONLY = sa.text("status = 'queued'")


def _tenant_fk() -> sa.Column:
    return sa.Column("tenant_id", sa.UUID(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "tenant_limits", _tenant_fk(),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("submits_per_min", sa.Integer(), nullable=True),
        sa.Column("max_running_share", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("weight IS NULL OR weight > 0", name="ck_tenant_limits_weight"),
        sa.CheckConstraint("max_queued IS NULL OR max_queued >= 0", name="ck_tenant_limits_max_queued"),
        sa.CheckConstraint("submits_per_min IS NULL OR submits_per_min >= 0", name="ck_tenant_limits_submits"),
        sa.CheckConstraint("max_running_share IS NULL OR (max_running_share > 0 AND max_running_share <= 1)",
                           name="ck_tenant_limits_running_share"),
    )
    op.create_table(
        "tenant_usage", _tenant_fk(),
        sa.Column("vtime", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "tenant_submissions", _tenant_fk(),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["signature", "tenant_id", sa.text("priority DESC"), "seq"],
                    postgresql_where=QUEUED_ONLY)
    op.create_index("ix_jobs_tenant_queued", "jobs", ["tenant_id"], postgresql_where=QUEUED_ONLY)


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_queued", table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["signature", sa.text("priority DESC"), "seq"],
                    postgresql_where=QUEUED_ONLY)
    op.drop_table("tenant_submissions")
    op.drop_table("tenant_usage")
    op.drop_table("tenant_limits")
