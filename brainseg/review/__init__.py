"""Reviewer tools: the error queue, TTA uncertainty, Grad-CAM and the review log."""
