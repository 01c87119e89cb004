"""Revisions of the topchef store's schema."""
