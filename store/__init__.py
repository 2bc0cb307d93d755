"""The SQLite store (SQLAlchemy) where every stage meets; analysts query it directly."""
