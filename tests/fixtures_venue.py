"""Fixtures that start the paper venue on loopback (filled in by the venue work)."""
