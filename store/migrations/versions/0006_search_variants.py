"""The search index also holds Sudachi's normalized forms (title_norm, body_norm), so that spelling
variants find the same items (つながらない, 繋がらない, 繋がら無い). The index is made again here, empty;
it is filled in batches like new items (`mynawatch db upgrade` at once, else the next classify run or
search), so a large store does not hold the write lock for one long transaction.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07
"""

from alembic import op

from store.dialect import SQLite

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def _drop_index() -> None:
    for trigger in ("items_fts_insert", "items_fts_update", "items_fts_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS items_fts")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":  # the search index exists on SQLite only
        return
    _drop_index()
    SQLite().create_search_index(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _drop_index()  # the older code makes its own index again on open and fills it in batches
