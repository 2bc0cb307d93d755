"""Schema migrations (Alembic). Every schema change is a revision in versions/; tests/test_migrations.py
fails when the models and the migrations disagree."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

HERE = Path(__file__).parent
FIRST = "0001"


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, *, to: str = "head") -> tuple[str | None, str]:
    """Bring the schema of ``engine``'s database to revision ``to``.

    A new store is created from the models and stamped with the head revision (tests/test_migrations.py
    checks that the migrations build the same schema). A store created before migrations existed
    (tables but no alembic_version) is taken as revision 0001.
    """
    from store.tables import Base
    from store.views import drop_views

    with engine.begin() as connection:
        before = current(connection)
        if before is None and not inspect(connection).has_table("items") and to == "head":
            Base.metadata.create_all(connection)
            command.stamp(_config(connection), "head")
            return None, current(connection)
        if before is None and inspect(connection).has_table("items"):
            command.stamp(_config(connection), FIRST)
            before = FIRST
        if before == head() or before == to:
            return before, before
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # SQLite rebuilds tables to alter them: foreign keys are checked once at the end instead
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # the PRAGMA only takes effect outside a transaction
        try:
            with connection.begin():
                drop_views(connection)  # views would block table rebuilds; open_engine recreates them
                command.upgrade(_config(connection), to)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows with broken references: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
        return before, current(connection)
