"""The model version a store serves: reports read its labels until a retrain switches it (in the same
transaction that re-tags the store), so a correction or a new model file never changes what they count.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('served_model',
    sa.Column('id', sa.Integer(), nullable=False, comment='always 1'),
    sa.Column('model_version', sa.String(length=80), nullable=False, comment='classifications.model_version of the served labels'),
    sa.Column('model_key', sa.String(length=64), nullable=True, comment='its file in the model cache; NULL when unknown (served before 0004)'),
    sa.Column('basis', sa.String(length=64), nullable=True, comment='key of the corpus and code it was trained on, corrections aside'),
    sa.Column('corrections', sa.Integer(), nullable=False, comment='human corrections it was trained on'),
    sa.Column('served_since', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # A tagged store goes on serving the labels it has: the newest model version's. Its model file is
    # unknown, so the next classify run retrains and switches in one transaction.
    op.execute("""
        INSERT INTO served_model (id, model_version, model_key, basis, corrections, served_since)
        SELECT 1, model_version, NULL, NULL, 0, max(created_at) FROM classifications
        WHERE model_version <> 'human'
        GROUP BY model_version ORDER BY max(created_at) DESC, model_version LIMIT 1""")


def downgrade() -> None:
    op.drop_table('served_model')
