"""Vector families with their own small generators (``build() -> dict``), wired into scripts/make_vectors.py."""
