"""Collect items from news, trend and social feeds into the store: politely, never losing or double-counting."""
