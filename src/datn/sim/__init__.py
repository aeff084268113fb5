"""Deterministic drivers of the core: seeded traders in virtual time."""
