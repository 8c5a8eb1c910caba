"""The latency suite: ``tl-engine bench`` (see bench/runner.py and docs/latency.md)."""
