"""Inference: loading models, the cascade, post-processing, predicting files and uploads."""
