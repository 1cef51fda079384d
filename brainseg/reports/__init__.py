"""Outputs for people: overlays, figures, exports and the model card."""
