"""Revisions of the blitz store's schema."""
