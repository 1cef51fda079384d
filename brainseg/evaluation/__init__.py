"""Evaluation: figures on a folder, threshold analysis, operating point, calibration, bootstrap, speed."""
