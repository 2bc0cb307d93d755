"""incident_records and incident_item_records (issue 16): incidents derived from the store (store/incidents.py)
and each incident's items with their part in it; analysts read them through the views incidents and
incident_items. Both are recomputed from the items, so the tables start empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('incident_records',
    sa.Column('id', sa.String(length=120), nullable=False, comment='stable: Tokyo day and hour of the first trouble report, and the services'),
    sa.Column('services', sa.String(length=300), nullable=False, comment='taxonomy service codes, comma-separated, sorted'),
    sa.Column('started_at', sa.DateTime(), nullable=False, comment='the first trouble report (its published time)'),
    sa.Column('ended_at', sa.DateTime(), nullable=False, comment='the signal back at its baseline (end of the last hour above it)'),
    sa.Column('ongoing', sa.Boolean(), nullable=False, comment='the signal was still above its baseline'),
    sa.Column('peak_at', sa.DateTime(), nullable=False, comment='the hour with the most trouble stories (its start)'),
    sa.Column('peak_count', sa.Integer(), nullable=False, comment='distinct trouble stories in that hour'),
    sa.Column('causes', sa.String(length=200), nullable=False, comment='leading causes as the items give them, most stories first'),
    sa.Column('stories', sa.Integer(), nullable=False, comment='distinct trouble stories'),
    sa.Column('items', sa.Integer(), nullable=False, comment='trouble items'),
    sa.Column('publishers', sa.Integer(), nullable=False, comment='distinct publishers of trouble items'),
    sa.Column('first_item_id', sa.Integer(), nullable=False, comment='the first trouble report'),
    sa.Column('official_at', sa.DateTime(), nullable=True, comment='the first item from an official source'),
    sa.Column('official_item_id', sa.Integer(), nullable=True),
    sa.Column('recovered_at', sa.DateTime(), nullable=True, comment='the first recovery report, official or not'),
    sa.Column('recovery_item_id', sa.Integer(), nullable=True),
    sa.Column('alerts', sa.Text(), nullable=False, comment='dedup keys of the alerts it covers, comma-separated'),
    sa.ForeignKeyConstraint(['first_item_id'], ['items.id'], ),
    sa.ForeignKeyConstraint(['official_item_id'], ['items.id'], ),
    sa.ForeignKeyConstraint(['recovery_item_id'], ['items.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_incident_records_started_at', 'incident_records', ['started_at'], unique=False)
    op.create_table('incident_item_records',
    sa.Column('incident_id', sa.String(length=120), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False, comment='trouble | recovery | followup'),
    sa.Column('official', sa.Boolean(), nullable=False, comment='from an official source'),
    sa.ForeignKeyConstraint(['incident_id'], ['incident_records.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ),
    sa.PrimaryKeyConstraint('incident_id', 'item_id')
    )
    op.create_index('ix_incident_item_records_item', 'incident_item_records', ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_incident_item_records_item', table_name='incident_item_records')
    op.drop_table('incident_item_records')
    op.drop_index('ix_incident_records_started_at', table_name='incident_records')
    op.drop_table('incident_records')
