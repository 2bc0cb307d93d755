"""Tag items on the taxonomy's four axes: relevant, services, cause, sentiment."""
