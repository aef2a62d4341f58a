"""Vector families, one module per file of protocol/vectors/, each with ``build() -> dict``.

``_kit`` holds what they share (fixed keys, JSON forms, hand assembly); scripts/make_vectors.py
runs them and writes the files.
"""
