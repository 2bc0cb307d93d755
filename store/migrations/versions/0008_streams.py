"""stream sources: cursors and stream signals (issue 15). Each stream's position and health
(stream_states: the cursor is written with the posts it covers) and reposts of stored posts
(stream_reposts: buzz on the original). Posts themselves are items.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stream_states',
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True, comment='jetstream: time_us of the last frame stored; misskey: last note id'),
    sa.Column('cursor_at', sa.DateTime(), nullable=True, comment='the time of that frame'),
    sa.Column('state', sa.String(length=30), nullable=False, comment='new | connected | reconnecting | dropping behind | paused | stopped'),
    sa.Column('connected_since', sa.DateTime(), nullable=True),
    sa.Column('last_frame_at', sa.DateTime(), nullable=True, comment='when the last frame was received'),
    sa.Column('reconnects', sa.Integer(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False, comment='frames received (a replayed overlap not counted twice)'),
    sa.Column('kept', sa.Integer(), nullable=False, comment='posts that passed the prefilter'),
    sa.Column('errors', sa.Integer(), nullable=False, comment='frames skipped: malformed or over max_frame_bytes'),
    sa.Column('dropped', sa.Integer(), nullable=False, comment='frames lost while dropping behind (streams without replay)'),
    sa.Column('messages_per_min', sa.Float(), nullable=False, comment='over the last minute or so'),
    sa.Column('kept_per_min', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ),
    sa.PrimaryKeyConstraint('source_id')
    )
    op.create_table('stream_reposts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False, comment='the original post'),
    sa.Column('repost_key', sa.Text(), nullable=False, comment="the repost's own identity (at:// URI, note address)"),
    sa.Column('author', sa.String(length=200), nullable=False, comment='who reposted'),
    sa.Column('reposted_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repost_key')
    )
    op.create_index('ix_stream_reposts_reposted_at', 'stream_reposts', ['reposted_at'], unique=False)
    op.create_index(op.f('ix_stream_reposts_item_id'), 'stream_reposts', ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_stream_reposts_item_id'), table_name='stream_reposts')
    op.drop_index('ix_stream_reposts_reposted_at', table_name='stream_reposts')
    op.drop_table('stream_reposts')
    op.drop_table('stream_states')
