"""Revisions of the nova store's schema."""
