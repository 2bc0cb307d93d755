"""fetch_log indexed by time: the daily report reads each day's fetches (and the 28 days before) to tell a
day with nothing collected from a quiet one (issue 13, reports/coverage.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fetch_log_started_at", "fetch_log", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fetch_log_started_at", table_name="fetch_log")
