"""Execution: the signal pipeline, order tracking, reconciliation, rate limits, stop-limit."""
