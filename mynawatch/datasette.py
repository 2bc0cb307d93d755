"""Datasette metadata for a store, whatever its file is called.

Datasette names a database after its file (``store.sqlite`` -> ``store``) and applies the metadata
of that name only, so the shipped metadata (written for the name ``mynawatch``) is given the name of
the file that is being opened.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import make_url

TEMPLATE = Path(__file__).parent / "templates" / "datasette-metadata.json"
SHIPPED_NAME = "mynawatch"


def database_name(url: str) -> str:
    """The name Datasette gives the SQLite store at ``url``: its file name without the extension.
    ValueError for a store that is not a SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        raise ValueError(f"{url}: Datasette opens SQLite files only")
    return Path(parsed.database).stem


def datasette_metadata(name: str) -> dict:
    """The shipped metadata (views described, hidden search-index tables, canned queries) for the database ``name``."""
    metadata = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    metadata["databases"] = {name: metadata["databases"][SHIPPED_NAME]}
    return metadata
