"""Experiments that both train and evaluate: the recorded ablation behind the shipped recipe."""
