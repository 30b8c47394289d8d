"""Worker liveness apart from the lease, and crash evidence per job (issue 15).

- ``workers``: one row per running worker (its main process), keyed by the nonce that
  every lease token it mints carries (worker/owner.py), beaten every
  ``FRESCO_LIVENESS_BEAT_S`` from a thread that does no rendering. A worker whose beat is
  older than ``FRESCO_LIVENESS_TIMEOUT_S`` is dead: its running jobs go back to the queue
  then, whatever their (long) lease says (worker/liveness.py).
- ``jobs.crashes``: how many times a render process holding the job died while its worker
  lived (the reaper's evidence, worker/reaper.py). A whole worker lost adds nothing: it
  is no evidence against its jobs. Suspects (2 crashes or more) render apart, by halves
  (worker/claim.py).

Adding a column with a constant default is a catalog change in Postgres 11+: no rewrite
of a large jobs table.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.add_column('jobs', sa.Column('crashes', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    op.drop_column('jobs', 'crashes')
    op.drop_table('workers')
