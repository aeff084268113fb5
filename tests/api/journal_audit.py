"""What a node's journal says it did with locks, replayed after a kill test.

A real node's journal is replayed from its genesis through the node's own
core (:meth:`datn.protocol.node.NodeCore.replayed`), which gives back the
effects each entry had when the node ran: the offers it sent as a holder,
its decisions, the acceptances it sent as an originator. :class:`LockAudit`
checks the holder's rules on them, by the holder's own clock as its journal
recorded it: a lock is taken only before its expiry and never across a
restart, and a decision once sent stays the decision. It also counts the
kills that fell between an acceptance and its answer, on either side, so
that a kill test can say it exercised them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datn.protocol.effects import Effect, JournalEntry, ReceiveInput, RestartInput, Send
from datn.protocol.messages import Acceptance, Confirmation, PotentialTrades, Refusal
from datn.protocol.node import NodeCore
from datn.store.sqlite import SQLiteReader
from datn.wire import decode_entry

PAGE = 4_096


def journal_of(store_file: Path) -> Iterator[JournalEntry]:
    """Every entry of the journal in ``store_file`` (an SQLite store), in order."""
    reader = SQLiteReader(store_file)
    try:
        after = 0
        while True:
            page = reader.entries(after, PAGE)
            for position, data in page:
                after = position
                yield decode_entry(data)
            if len(page) < PAGE:
                return
    finally:
        reader.close()


@dataclass
class LockAudit:
    """Fed each journal entry of one node with the effects it had, in order."""

    generation: int = 0
    """Restarts so far: a lock offered before one is void after it."""
    offered: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Lock id -> (its expiry on this node's monotonic clock, the generation
    it was offered in), for the locks this node offered as a holder."""
    decided: dict[int, tuple[Confirmation | Refusal, int]] = field(default_factory=dict)
    """Lock id -> this node's first decision on it, and its generation."""
    accepted: dict[tuple[str, int], int] = field(default_factory=dict)
    """(holder, lock id) -> the generation this node first accepted it in."""
    answered: set[tuple[str, int]] = field(default_factory=set)
    asked_again: set[int] = field(default_factory=set)
    confirmations: int = 0
    originator_kills_between: int = 0
    """Acceptances this node sent whose answer it took in after a restart."""
    holder_kills_between: int = 0
    """Locks this node offered before a restart whose acceptance it took
    in after it: it was killed between its offer and its answer, with the
    acceptance on its way, not yet sent, or decided and not yet answered
    (then it answers again, the same)."""
    violations: list[str] = field(default_factory=list)

    def observe(self, entry: JournalEntry, effects: list[Effect]) -> None:
        event, now = entry.input, entry.now
        if isinstance(event, RestartInput):
            self.generation += 1
        if isinstance(event, ReceiveInput):
            self._received(event)
        for effect in effects:
            if type(effect) is not Send:
                continue
            message = effect.message
            if isinstance(message, PotentialTrades):
                for offer in message.offers:
                    expiry = now.mono_ms + offer.ttl_ms
                    self.offered.setdefault(offer.lock_id, (expiry, self.generation))
            elif isinstance(message, Acceptance):
                self.accepted.setdefault((effect.peer, message.lock_id), self.generation)
            elif isinstance(message, Confirmation | Refusal):
                self._decision(message, now.mono_ms)

    def _received(self, event: ReceiveInput) -> None:
        message = event.message
        if isinstance(message, Acceptance):
            offered = self.offered.get(message.lock_id)
            lock = message.lock_id
            if offered and offered[1] < self.generation and lock not in self.asked_again:
                self.asked_again.add(lock)
                self.holder_kills_between += 1
        elif isinstance(message, Confirmation | Refusal):
            key = (event.sender, message.lock_id)
            sent = self.accepted.get(key)
            if sent is not None and key not in self.answered:
                self.answered.add(key)
                if sent < self.generation:
                    self.originator_kills_between += 1

    def _decision(self, message: Confirmation | Refusal, mono_ms: int) -> None:
        lock = message.lock_id
        first = self.decided.get(lock)
        if first is None:
            self.decided[lock] = (message, self.generation)
            if isinstance(message, Confirmation):
                self._check_taken(lock, mono_ms)
            return
        if message == first[0]:
            return  # the same answer to a repeated acceptance
        if isinstance(first[0], Refusal):
            # A refusal is final too: nothing may follow it but itself.
            self.violations.append(f"lock {lock}: refused, then answered {message}")
            if isinstance(message, Confirmation):
                self._check_taken(lock, mono_ms)
            return
        # Once the pair has settled the trade, the holder forgets the lock,
        # and a late copy of the acceptance is told unknown_lock: no record,
        # not a refusal.
        if not (isinstance(message, Refusal) and message.reason == "unknown_lock"):
            self.violations.append(f"lock {lock}: confirmed, then answered {message}")

    def _check_taken(self, lock: int, mono_ms: int) -> None:
        self.confirmations += 1
        offered = self.offered.get(lock)
        if offered is None:
            self.violations.append(f"lock {lock} confirmed but never offered")
            return
        expiry, generation = offered
        if generation != self.generation:
            self.violations.append(f"lock {lock} taken after a restart voided it")
        if mono_ms >= expiry:
            self.violations.append(f"lock {lock} taken {mono_ms - expiry} ms after its expiry")


def audit(store_file: Path) -> LockAudit:
    """The lock audit of the node whose SQLite store is ``store_file``."""
    found = LockAudit()
    for entry, effects in NodeCore.replayed(journal_of(store_file)):
        found.observe(entry, effects)
    return found
