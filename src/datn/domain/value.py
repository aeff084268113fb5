"""The base of the protocol's immutable values, and node ids."""

from __future__ import annotations

from typing import NewType

import msgspec

NodeId = NewType("NodeId", str)
"""A node's id: the hex of its Ed25519 public key on a real network."""


class Value(msgspec.Struct, frozen=True, gc=False, array_like=True, forbid_unknown_fields=True):
    """Base of the protocol's immutable values: timestamps, messages, inputs,
    effects.

    A frozen msgspec struct: fields fixed by annotation, equality, hashing
    and repr by value, and about six times cheaper to make than a frozen
    dataclass, which matters because every message makes several. ``gc=False``
    keeps them out of the cycle collector's scans: they hold only other
    immutable values, so they can never be part of a reference cycle.
    ``array_like`` makes them encode as MessagePack arrays, not maps with
    their field names: a snapshot of a node holds hundreds of thousands of
    them, and the peer wire has schemas of its own (:mod:`datn.wire`). An
    array with more elements than the struct has fields is refused, so a
    stored value written by a newer version cannot lose a field unseen.
    Subclasses say ``frozen=True`` again so that type checkers know it too.
    """
