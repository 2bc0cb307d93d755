"""Publisher names learned per host (Google News <source url>, configured outlet feeds), so an item without a
publisher of its own is counted under its outlet's name rather than its host name.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: existing items keep their names until a feed teaches their host's (store.publishers).
    op.create_table('publisher_hosts',
    sa.Column('host', sa.String(length=253), nullable=False, comment='lower case, without a leading www.'),
    sa.Column('publisher', sa.String(length=200), nullable=False),
    sa.Column('learned_from', sa.String(length=30), nullable=False, comment='google_news (its <source url>) | source (a configured outlet feed)'),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('host')
    )


def downgrade() -> None:
    op.drop_table('publisher_hosts')
