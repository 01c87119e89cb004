"""Revisions of the nanny store's schema."""
