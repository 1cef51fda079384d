"""Experiments that both train and evaluate: the recorded ablation behind the shipped recipe, and fine-tuning
from reviewers' corrections with its before/after validation figures."""
