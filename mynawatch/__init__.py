"""mynawatch: the composition root (CLI, settings, scheduler wiring)."""

__version__ = "0.1.0"
