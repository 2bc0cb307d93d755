"""alerts marked as backfilled (issue 16), and the evidence an alert carries: the baseline's expected count
in the peak hour and over the flagged hours, beside the stories counted. Existing alerts are live ones
(``backfilled`` false); their expected counts are unknown (NULL) and notices leave them out.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("peak_expected", sa.Float(), nullable=True,
                                   comment="the baseline's expected count in the peak hour"))
        batch.add_column(sa.Column("total_count", sa.Integer(), nullable=True,
                                   comment="trouble stories over the flagged hours"))
        batch.add_column(sa.Column("total_expected", sa.Float(), nullable=True,
                                   comment="the baseline's expected count over those hours"))
        batch.add_column(sa.Column("backfilled", sa.Boolean(), nullable=False, server_default=sa.false(),
                                   comment="recorded for past hours (alerts backfill, a catch-up): not notified then"))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        for column in ("backfilled", "total_expected", "total_count", "peak_expected"):
            batch.drop_column(column)
