"""Revisions of the jobman store's schema."""
