"""Training (imports core; nothing outside training imports it)."""
