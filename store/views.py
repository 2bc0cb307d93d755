"""Views for analysts: stable names and columns across versions (tests/test_views.py pins them).

Days are Asia/Tokyo calendar days (`day` = 'YYYY-MM-DD'); times stay UTC. The current label of an
item is a person's correction when there is one, else the label of the model version the store
serves (table served_model); items the relevance gate set aside count as irrelevant.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

VIEWS: dict[str, str] = {
    "item_labels_current": """
        SELECT i.id AS item_id, CASE WHEN i.gate = 'pass' THEN c.relevant ELSE {false} END AS relevant, c.cause,
               c.sentiment, c.confidence, c.model_version,
               CASE WHEN c.model_version = 'human' THEN 'human' ELSE 'model' END AS labeled_by,
               c.id AS classification_id
        FROM items i
        JOIN classifications c ON c.id = ({current})""",
    "item_labels_current_services": """
        SELECT l.item_id, s.service
        FROM item_labels_current l JOIN classification_services s ON s.classification_id = l.classification_id
        WHERE l.relevant""",
    "items_labeled": """
        SELECT i.id AS item_id, i.published_at, {day} AS day, i.publisher, i.title, i.canonical_url AS url,
               i.story_id, src.name AS source, i.gate,
               COALESCE(l.relevant, {false}) AS relevant,
               (SELECT {group_concat} FROM item_labels_current_services s WHERE s.item_id = i.id) AS services,
               COALESCE(l.cause, 'none') AS cause, l.sentiment, l.labeled_by, l.confidence
        FROM items i JOIN sources src ON src.id = i.source_id
        LEFT JOIN item_labels_current l ON l.item_id = i.id""",
    "daily_service_counts": """
        SELECT {day} AS day, s.service, count(*) AS items, count(DISTINCT i.story_id) AS stories,
               count(DISTINCT i.publisher) AS publishers
        FROM items i JOIN item_labels_current_services s ON s.item_id = i.id
        GROUP BY 1, 2""",
    "daily_cause_counts": """
        SELECT {day} AS day, l.cause, count(*) AS items, count(DISTINCT i.story_id) AS stories
        FROM items i JOIN item_labels_current l ON l.item_id = i.id
        WHERE l.relevant
        GROUP BY 1, 2""",
    "daily_sentiment_counts": """
        SELECT {day} AS day, l.sentiment, count(*) AS items, count(DISTINCT i.story_id) AS stories
        FROM items i JOIN item_labels_current l ON l.item_id = i.id
        WHERE l.relevant
        GROUP BY 1, 2""",
    "stories_with_publishers": """
        SELECT st.id AS story_id, st.title, st.first_seen_at, count(i.id) AS items,
               count(DISTINCT i.publisher) AS publishers,
               min(i.published_at) AS first_published_at, max(i.published_at) AS last_published_at
        FROM stories st JOIN items i ON i.story_id = st.id
        GROUP BY st.id, st.title, st.first_seen_at""",
    "story_publishers": """
        SELECT i.story_id, i.publisher, min(i.published_at) AS first_published_at, count(*) AS items
        FROM items i GROUP BY i.story_id, i.publisher""",
    "incidents": """
        SELECT i.id AS incident_id, {day} AS day, i.services, i.started_at, i.ended_at, i.ongoing, i.peak_at,
               i.peak_count, i.causes, i.stories, i.items, i.publishers, i.official_at, i.recovered_at,
               f.title AS first_title, f.publisher AS first_publisher, o.title AS official_title,
               o.publisher AS official_publisher, r.title AS recovery_title, r.publisher AS recovery_publisher,
               i.alerts
        FROM (SELECT inc.*, inc.started_at AS published_at FROM incident_records inc) i
        JOIN items f ON f.id = i.first_item_id
        LEFT JOIN items o ON o.id = i.official_item_id
        LEFT JOIN items r ON r.id = i.recovery_item_id""",
    "incident_items": """
        SELECT m.incident_id, m.role, m.official, l.item_id, l.published_at, l.day, l.publisher, l.title, l.url,
               l.story_id, l.source, l.services, l.cause, l.sentiment
        FROM incident_item_records m JOIN items_labeled l ON l.item_id = m.item_id""",
}

# The current classification of item i: a person's, else the served model version's (the newest
# when the store serves none yet). A correlated subquery (not a window over the whole table) so a
# filter on the outer query is applied first on large stores.
CURRENT = """SELECT c2.id FROM classifications c2 WHERE c2.item_id = i.id
             AND (c2.model_version = 'human' OR NOT EXISTS (SELECT 1 FROM served_model)
                  OR c2.model_version = (SELECT model_version FROM served_model WHERE id = 1))
             ORDER BY CASE WHEN c2.model_version = 'human' THEN 0 ELSE 1 END, c2.created_at DESC, c2.id DESC
             LIMIT 1"""


def drop_views(connection) -> None:
    for name in reversed(list(VIEWS)):
        connection.execute(text(f"DROP VIEW IF EXISTS {name}"))


def create_views(connection, dialect) -> None:
    """(Re)create every view; views hold no data, so replacing them never loses any. What the engines spell
    differently (the Tokyo day, joined strings, false) comes from the ``dialect`` (store/dialect.py, which
    reads ``CURRENT`` here). PostgreSQL replaces them in place, so a reader never finds them missing."""
    words = dialect.view_words()
    if dialect.name != "sqlite":
        try:
            with connection.begin_nested():
                for name, body in VIEWS.items():
                    connection.execute(text(f"CREATE OR REPLACE VIEW {name} AS {body.format(**words)}"))
            return
        except DBAPIError:  # a view's columns changed (PostgreSQL replaces only when they stay): make them anew
            pass
    drop_views(connection)
    for name, body in VIEWS.items():
        connection.execute(text(f"CREATE VIEW {name} AS {body.format(**words)}"))
