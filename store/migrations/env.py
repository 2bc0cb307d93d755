"""Alembic environment: migrations run on the connection mynawatch hands over (see store/migrations/__init__.py)."""

from alembic import context

from store.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=False)
with context.begin_transaction():
    context.run_migrations()
