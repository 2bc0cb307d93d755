"""Daily reports, digest emails, charts and spike alerts."""
