"""Evaluation: metrics (scikit-learn) and scoring of models on data sets."""
