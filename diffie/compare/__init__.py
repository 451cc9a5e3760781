"""Comparing base and head captures: pixel diffs (pixeldiff), visual findings and logs."""
