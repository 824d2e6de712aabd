"""Evaluation metrics on plain arrays: weat.py (WEAT score and effect size)."""
