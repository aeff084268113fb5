"""Clearing between nodes: bonds, exposure, lock quotas and netted settlement.

Pure, integer-only rules (DESIGN.md section 7) that the node core applies;
nothing here performs I/O.
"""
