"""Evaluation: batch search → Run, pure metric functions, comparison tables."""
