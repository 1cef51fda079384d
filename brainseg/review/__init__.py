"""Reviewer tools: the error queue, TTA uncertainty, Grad-CAM, the review store (verdicts and versioned mask
corrections, SQLite or PostgreSQL) and the corrections' export (Kaggle layout, NIfTI)."""
