"""TEMPORARY stub (reverted before the reads branch is merged)."""
READS_DERIVED_MANIFEST = 1
READS = READS_DERIVED_MANIFEST
