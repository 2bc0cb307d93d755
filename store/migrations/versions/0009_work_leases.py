"""leases for many workers on one store (issue 14): the `run` processes and their roles (work_workers), work
one collector holds at a time (work_leases: a source, the article pages) and the items a classifier worker is
tagging (work_claims). Empty and unused on a single-process SQLite store.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_workers",
        sa.Column("holder", sa.String(length=200), nullable=False, comment="host:pid:random, unique per process"),
        sa.Column("role", sa.String(length=20), nullable=False, comment="collect | classify | alerts | all"),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False,
                  comment="holds the alerts lock (alerts, notifications, reports)"),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False,
                  comment="last heartbeat; gone after a few lease times without one"),
        sa.PrimaryKeyConstraint("holder"),
    )
    op.create_table(
        "work_leases",
        sa.Column("name", sa.String(length=200), nullable=False, comment="source:NAME or articles"),
        sa.Column("holder", sa.String(length=200), nullable=False, comment="work_workers.holder"),
        sa.Column("expires_at", sa.DateTime(), nullable=False, comment="free for another worker after this"),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "work_claims",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False, comment="work_workers.holder"),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_work_claims_expires_at", "work_claims", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_work_claims_expires_at", table_name="work_claims")
    op.drop_table("work_claims")
    op.drop_table("work_leases")
    op.drop_table("work_workers")
