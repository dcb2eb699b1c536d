"""Tracking for time-lapse movies: the online tracker, its tables, and CTC folders and metrics."""
