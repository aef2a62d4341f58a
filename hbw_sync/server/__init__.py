"""The hbw-sync relay (``hbw-relay``): runs in the office, never reads content."""
