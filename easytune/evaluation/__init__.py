"""Blind evaluation of a finished job (quality verdict) and the post-fine-tuning safety check.

`service` (evaluate_job, list_evaluations, compare_jobs) and `safety` (safety_check) are the entry
points; neither imports torch until a model is actually run.
"""
