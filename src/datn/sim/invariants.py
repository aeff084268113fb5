"""The invariants of DESIGN.md section 12, checked while a simulation runs.

The checker watches what nodes send (it sees every offer, confirmation and
refusal) and inspects the nodes it was told changed. During the safety phase
it checks, after every event: every ledger balances and no bounded account
is below its floor (1, 2); no resting order has more locked than open (3); no
lock is taken after its expiry by its holder's clock or after its holder
restarted, and a holder's decision on a lock never changes (4, 6). The
simulator itself checks that a node rebuilt from its journal equals the node
before the crash (7, 10). Whenever a holder offers locks it recomputes, from
the holder's ledger, books and open locks, the holder's exposure to the
originator and checks it is within what the originator's bond allows (8).
After the liveness phase it checks that no lock is open and that every trade
is on both nodes' ledgers: each pair's peer accounts mirror each other and,
per asset, the traders of the network hold exactly what was deposited (1, 5);
each bond is on both ledgers alike, and every node's capital plus the bonds
it posted is what it was funded with (1).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from datn.clearing.exposure import exposure, exposure_cap, marked_value
from datn.clearing.settlement import net_of
from datn.domain import Side
from datn.ledger import AccountKey, Ledger
from datn.protocol.clock import MAX_LOGICAL
from datn.protocol.effects import Effect, Executed, Reply, Send
from datn.protocol.messages import Confirmation, NodeId, PotentialTrades, Refusal

WALL_EPOCH_MS: Final = 1_795_000_000_000
"""Virtual time zero on the simulated nodes' wall clocks (late 2026): wall
clocks, even skewed ones, read like real epoch milliseconds, as the wire
expects. The simulator reads it from here."""

if TYPE_CHECKING:
    from datn.sim.network import Simulation


@mypyc_attr(native_class=False)  # compiled module; exceptions stay Python classes
class InvariantError(AssertionError):
    """An invariant broke; the message names it and the seed."""


@dataclass(slots=True)
class _OfferedLock:
    expires_mono_ms: int
    generation: int
    originator: NodeId
    price_ticks: int
    quantity_lots: int


class InvariantChecker:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._offered: dict[tuple[NodeId, int], _OfferedLock] = {}
        self._decided: dict[tuple[NodeId, int], Confirmation | Refusal] = {}
        self._generation: Counter[NodeId] = Counter()
        self._touched: set[NodeId] = set()
        self._walls: dict[NodeId, int] = {}
        """The latest wall time each node has read."""
        # Versions last checked; forgotten on restart, as a rebuilt node's
        # ledger and books count again from zero.
        self._ledger_seen: dict[NodeId, int] = {}
        self._book_seen: dict[NodeId, dict[str, int]] = {}
        self._sums: dict[NodeId, Counter[str]] = {}
        self._balances: dict[NodeId, dict[AccountKey, int]] = {}
        # Settlement: statements each node settled (in all, and per peer), the
        # rail balances of every ledger summed (kept from the balances above),
        # and per pair that is not in step what its two rails differ by.
        self._settled_total: dict[NodeId, int] = {}
        self._settled_seen: dict[tuple[NodeId, NodeId], int] = {}
        self._rails: dict[NodeId, Counter[str]] = {}
        self._rails_total: Counter[str] = Counter()
        self._rail_gaps: dict[tuple[NodeId, NodeId], dict[str, int]] = {}
        self._settling: list[NodeId] = []
        """Nodes that settled a statement in this event."""
        self.pairs_in_step = 0
        """How many times a pair was found to have settled the same
        statements, its rails mirroring: the per-cycle check at work."""

    def fail(self, text: str) -> None:
        raise InvariantError(f"seed {self.sim.seed}: {text}")

    # ------------------------------------------------------------ watching

    def observe(self, node_id: NodeId, effects: list[Effect]) -> None:
        """What an input to ``node_id`` produced: the node is re-checked after
        the event, and the locks and decisions it sent are recorded."""
        self.touched(node_id)
        for effect in effects:
            if isinstance(effect, Send):
                self.watch(node_id, effect)

    def touched(self, node_id: NodeId) -> None:
        """``node_id`` handled an input: check it after the event."""
        self._touched.add(node_id)

    def watch(self, holder: NodeId, effect: Send) -> None:
        """Record the locks offered and decisions sent in an order message."""
        message = effect.message
        if isinstance(message, PotentialTrades):
            if message.offers:
                self._check_exposure(holder, effect.peer)
            mono = self.sim.now(holder).mono_ms
            for offer in message.offers:
                key = (holder, offer.lock_id)
                if key not in self._offered:
                    self._offered[key] = _OfferedLock(
                        mono + offer.ttl_ms,
                        self._generation[holder],
                        effect.peer,
                        offer.price_ticks,
                        offer.quantity_lots,
                    )
        elif isinstance(message, Confirmation | Refusal):
            self._decision(holder, message)

    def _decision(self, holder: NodeId, message: Confirmation | Refusal) -> None:
        if holder in self.sim.strategies:
            return  # an adversary may say anything; what honest nodes do with it is checked
        key = (holder, message.lock_id)
        earlier = self._decided.get(key)
        if (
            earlier is not None
            and earlier != message
            and isinstance(earlier, Confirmation)
            and not self._forgotten_after_settling(holder, earlier, message)
        ):
            self.fail(f"{holder} changed its decision on lock {message.lock_id} (invariant 4/6)")
        if isinstance(message, Confirmation) and earlier is None:
            offered = self._offered.get(key)
            if offered is None:
                self.fail(f"{holder} confirmed lock {message.lock_id} it never offered")
                return
            if offered.generation != self._generation[holder]:
                self.fail(f"{holder} honoured lock {message.lock_id} after a restart (invariant 4)")
            if self.sim.now(holder).mono_ms >= offered.expires_mono_ms:
                self.fail(f"{holder} took lock {message.lock_id} after its expiry (invariant 4)")
        if earlier is None or isinstance(message, Confirmation):
            self._decided[key] = message

    def _forgotten_after_settling(
        self, holder: NodeId, confirmation: Confirmation, answer: Confirmation | Refusal
    ) -> bool:
        """A holder forgets a confirmation once the pair has settled its trade
        (both sides booked it, so no honest originator asks again); to a copy
        of the acceptance it answers ``unknown_lock``, which states that it
        keeps no record of the lock, not that it refused it."""
        if not isinstance(answer, Refusal) or answer.reason != "unknown_lock":
            return False
        core = self.sim.nodes[holder].core
        lock_id = confirmation.lock_id
        return lock_id not in core.holder.decisions and not any(
            lock_id in view.unsettled for view in core.liability.peers.values()
        )

    def confirmed(
        self, originator: NodeId, holder: NodeId, message: Confirmation, effects: list[Effect]
    ) -> None:
        """An originator handled a holder's confirmation: if it booked a trade,
        the trade is on the terms the holder offered it (invariant: no trade
        on terms other than offered)."""
        offered = self._offered.get((holder, message.lock_id))
        for effect in effects:
            if type(effect) is not Reply:
                continue
            event = effect.event
            if type(event) is not Executed or event.counterparty != holder:
                continue
            if offered is None or offered.originator != originator:
                self.fail(f"{originator} booked a trade on lock {message.lock_id} never offered it")
                return
            if (
                event.price_ticks != offered.price_ticks
                or event.quantity_lots > offered.quantity_lots
            ):
                self.fail(
                    f"{originator} booked {event.quantity_lots} at {event.price_ticks} on lock "
                    f"{message.lock_id}, offered {offered.quantity_lots} at {offered.price_ticks}"
                    " (terms other than offered)"
                )

    def executed(self, node_id: NodeId, event: Executed) -> None:
        """No trader's order trades at a price worse than its limit."""
        request = self.sim.orders.get((node_id, event.order_id))
        if request is None or request.price_ticks is None:
            return
        buy = request.side is Side.BUY
        if (buy and event.price_ticks > request.price_ticks) or (
            not buy and event.price_ticks < request.price_ticks
        ):
            self.fail(
                f"{node_id} order {event.order_id} traded at {event.price_ticks}, beyond its "
                f"limit {request.price_ticks} (a trader never pays beyond its limit)"
            )

    def _check_collateral(self, node_id: NodeId, key: AccountKey, balance: int) -> None:
        """A holder keeps as collateral only money its rail received."""
        poster = NodeId(key.owner.removeprefix("collateral:"))
        received = self.sim.rail_received[(poster, node_id)]
        returned = self.sim.rail_returned[(poster, node_id)]
        if balance > received - returned:
            self.fail(
                f"{node_id} holds {balance} collateral of {poster}, but its rail received "
                f"{received} and paid back {returned} (collateral only from received funds)"
            )

    def _check_can_send(self, node_id: NodeId) -> None:
        """Every node can still send: no peer pushed its clock beyond the
        drift it allows past the latest wall time the node itself has read,
        nor its counter towards the wire's limit."""
        node = self.sim.nodes[node_id]
        core = node.core
        last = core.context.clock.last
        wall = WALL_EPOCH_MS + self.sim.time_ms + node.skew_ms
        seen = self._walls.get(node_id, 0)
        if wall > seen:
            seen = self._walls[node_id] = wall
        if last.logical > 2 * MAX_LOGICAL or last.wall_ms > seen + core.config.max_clock_drift_ms:
            self.fail(f"{node_id}'s clock was pushed to {last} at wall {wall}: it could not send")

    def _check_exposure(self, holder: NodeId, originator: NodeId) -> None:
        core = self.sim.nodes[holder].core
        context = core.context
        clearing = core.config.clearing
        open_notional = 0
        for lock in core.holder.locks.values():
            if lock.originator == originator:
                order = core.resting.orders[lock.order_id].order
                assert order.price_ticks is not None
                product = context.products[order.product_id]
                open_notional += product.notional_minor(lock.quantity_lots, order.price_ticks)
        balances = {
            asset: _balance(self.sim, holder, f"peer:{originator}", asset)
            for asset in self.sim.deposited
        }
        # Marked as the holder marks it: at prices the originator does not set.
        marks: dict[str, int] = {}
        for product_id in context.products:
            mark = context.marks.mark(product_id, originator)
            if mark is not None:
                marks[product_id] = mark
        marked = marked_value(balances, context.products, marks, clearing.bond_asset)
        bond = -_balance(self.sim, holder, f"bond-held:{originator}", clearing.bond_asset)
        cap = exposure_cap(bond, clearing.exposure_multiple_percent)
        if exposure(marked, open_notional) > cap:
            self.fail(
                f"{holder} offered {originator} locks past its bond: exposure "
                f"{exposure(marked, open_notional)} > cap {cap} (invariant 8)"
            )

    def _check_ledger(self, node_id: NodeId, ledger: Ledger) -> None:
        """The whole ledger the first time (and after a restart); then only
        the accounts that changed, keeping this checker's own per-asset sum
        of every balance, which must stay zero: each entry balances."""
        sums = self._sums.get(node_id)
        if sums is None:
            ledger.watch_changes()
            ledger.drain_changes()
            problems = ledger.check_invariants()
            if problems:
                self.fail(f"{node_id} ledger: {'; '.join(problems)} (invariants 1, 2)")
            seen = {key: ledger.balance(key) for key in ledger.accounts()}
            self._balances[node_id] = seen
            self._sums[node_id] = Counter()
            rails: Counter[str] = Counter()
            for key, balance in seen.items():
                self._sums[node_id][key.asset] += balance
                if key.owner.startswith("rail:"):
                    rails[key.asset] += balance
            self._rails_total.subtract(self._rails.get(node_id, Counter()))
            self._rails_total.update(rails)
            self._rails[node_id] = rails
            return
        changed = set(ledger.drain_changes())
        if not changed:
            return
        seen = self._balances[node_id]
        for key in changed:
            balance = ledger.balance(key)
            delta = balance - seen.get(key, 0)
            sums[key.asset] += delta
            seen[key] = balance
            if delta > 0 and key.owner.startswith("collateral:"):
                self._check_collateral(node_id, key, balance)
            if delta and key.owner.startswith("rail:"):
                self._rails[node_id][key.asset] += delta
                self._rails_total[key.asset] += delta
        problems = ledger.check_accounts(changed)
        problems += [f"{asset}: balances sum to {total}" for asset, total in sums.items() if total]
        if problems:
            self.fail(f"{node_id} ledger: {'; '.join(problems)} (invariants 1, 2)")

    def restarted(self, node_id: NodeId) -> None:
        self._generation[node_id] += 1
        self._ledger_seen.pop(node_id, None)
        self._book_seen.pop(node_id, None)
        self._sums.pop(node_id, None)

    # ------------------------------------------------------------- safety

    def after_event(self) -> None:
        for node_id in self._touched:
            self._check_node(node_id)
        self._touched.clear()
        if self._settling:
            # After every touched ledger is checked: the rails' running
            # total then covers every change of this event.
            for node_id in self._settling:
                self._check_settlements(node_id)
            self._settling.clear()
            self._check_rails()

    def _check_node(self, node_id: NodeId) -> None:
        core = self.sim.nodes[node_id].core
        self._check_can_send(node_id)
        # Most events (heartbeats, adverts) leave the ledger and the books
        # alone; re-checking them only after a change keeps the check total.
        ledger = core.context.ledger
        ledger_version = ledger.version
        if self._ledger_seen.get(node_id) != ledger_version:
            self._ledger_seen[node_id] = ledger_version
            self._check_ledger(node_id, ledger)
        # Outside the ledger check: a statement that nets to nothing settles
        # without a ledger entry.
        settled = core.stats.get("statements_settled", 0)
        if self._settled_total.get(node_id, 0) != settled:
            self._settled_total[node_id] = settled
            self._settling.append(node_id)
        seen = self._book_seen.get(node_id)
        if seen is None:
            seen = self._book_seen[node_id] = {}
        changed = False
        for product_id, book in core.resting.books.items():
            book_version = book.version
            if seen.get(product_id) == book_version:
                continue
            seen[product_id] = book_version
            changed = True
            for side in (Side.BUY, Side.SELL):
                for level in book.depth(side, 5):
                    if not 0 <= level.locked_lots <= level.quantity_lots:
                        self.fail(f"{node_id} {product_id}: locked beyond open (invariant 3)")
        if changed:
            in_books = sum(len(book) for book in core.resting.books.values())
            if in_books != len(core.resting.orders):
                self.fail(
                    f"{node_id}: {in_books} orders in its books, "
                    f"{len(core.resting.orders)} in its records of resting orders"
                )

    def _check_settlements(self, node_id: NodeId) -> None:
        """``node_id`` settled one or more statements in this event: check
        each pair it settled with (settlement conservation, after every
        cycle)."""
        for peer, view in self.sim.nodes[node_id].core.liability.peers.items():
            if self._settled_seen.get((node_id, peer), 0) != view.settled:
                self._settled_seen[(node_id, peer)] = view.settled
                self._check_pair_settled(node_id, peer)

    def _check_rails(self) -> None:
        """The rails of the whole network, summed from every ledger's balances
        as this checker follows them, equal what the pairs still settling
        differ by, each of which is the statement its lower id has yet to
        settle: settling creates and destroys nothing."""
        gaps: Counter[str] = Counter()
        for gap in self._rail_gaps.values():
            gaps.update(gap)
        if _nonzero(self._rails_total) != _nonzero(gaps):
            self.fail(
                f"the network's rails sum to {_nonzero(self._rails_total)}, but the pairs "
                f"still settling account for {_nonzero(gaps)} "
                "(invariants 1, 5: settlement conservation)"
            )

    def _check_pair_settled(self, a: NodeId, b: NodeId) -> None:
        """After ``a`` settled with ``b``: ``a``'s accounts for ``b`` hold
        exactly the trades not settled yet (what was settled left them, no
        more, no less). The higher id settles a statement first, when it
        reproduces the proposal; the lower id when the answer comes back. So
        either both have settled the same statements and their rails mirror
        per asset, or the higher id is one statement ahead and the rails
        differ by exactly the net of the proposal the lower id still waits on."""
        nodes = self.sim.nodes
        low, high = (a, b) if a < b else (b, a)
        rails = {
            asset: _balance(self.sim, low, f"rail:{high}", asset)
            + _balance(self.sim, high, f"rail:{low}", asset)
            for asset in self.sim.deposited
        }
        gap = {asset: amount for asset, amount in rails.items() if amount}
        if gap:
            self._rail_gaps[(low, high)] = gap
        else:
            self._rail_gaps.pop((low, high), None)
        if self._parted(a, b):
            return  # a default claimed the bond into the peer's accounts
        here = nodes[a].core
        open_trades = dict(net_of(here.liability.unsettled(b).values()))
        for asset in self.sim.deposited:
            balance = _balance(self.sim, a, f"peer:{b}", asset)
            if balance != open_trades.get(asset, 0):
                self.fail(
                    f"{a} settled with {b}, and its {asset} account for {b} holds {balance}, "
                    f"not the {open_trades.get(asset, 0)} of the trades still open "
                    "(invariants 1, 5: settlement conservation)"
                )
        lower = nodes[low].core.liability.peers[high]
        ahead = nodes[high].core.liability.peers[low].settled - lower.settled
        if ahead == 0:
            expected: dict[str, int] = {}
            self.pairs_in_step += 1
        elif ahead == 1 and lower.proposal is not None:
            expected = {asset: -amount for asset, amount in lower.proposal.statement.net}
        else:
            self.fail(
                f"{high} settled {ahead} statements more than {low} "
                "(invariants 1, 5: settlement conservation)"
            )
            return
        if gap != expected:
            self.fail(
                f"{low} and {high} have settled {lower.settled} and {lower.settled + ahead} "
                f"statements, and their rails differ by {gap}, not {expected} "
                "(invariants 1, 5: settlement conservation)"
            )

    # ----------------------------------------------------------- liveness

    def final(self) -> None:
        sim = self.sim
        # Every balance of every node once, by (owner, asset): the pairwise
        # checks below read hundreds of thousands of them at 200 nodes.
        books = {
            node_id: {
                (key.owner, str(key.asset)): node.core.context.ledger.balance(key)
                for key in node.core.context.ledger.accounts()
            }
            for node_id, node in sim.nodes.items()
        }
        for node_id, node in sim.nodes.items():
            problems = node.core.context.ledger.check_invariants()
            if problems:
                self.fail(f"{node_id} ledger: {'; '.join(problems)} (invariants 1, 2)")
            locks = node.core.holder.locks
            if locks:
                self.fail(f"{node_id} still holds locks {sorted(locks)} (invariant 4)")
        defaults = {
            node_id: node.core.stats.get("defaults_declared", 0)
            for node_id, node in sim.nodes.items()
        }
        if not sim.strategies and any(defaults.values()):
            self.fail(f"honest nodes declared defaults: {defaults} (settlement liveness)")
        assets = set(sim.deposited)
        for a in sim.ids:
            for b in sim.ids:
                if a >= b or self._parted(a, b):
                    continue
                for asset in sorted(assets):
                    for kind in ("peer", "rail"):
                        here = books[a].get((f"{kind}:{b}", asset), 0)
                        there = books[b].get((f"{kind}:{a}", asset), 0)
                        if here + there != 0:
                            self.fail(
                                f"{a} and {b} disagree on {kind} {asset}: {here} vs {there}"
                                " (invariant 5)"
                            )
        for asset, deposited in sim.deposited.items():
            held = sum(
                books[node_id].get((f"trader:{trader}", asset), 0)
                for node_id, traders in sim.traders.items()
                for trader in traders
            )
            if held != deposited:
                self.fail(f"{asset}: traders hold {held}, {deposited} deposited (invariant 1)")
        self._check_bonds(books)

    def _parted(self, a: NodeId, b: NodeId) -> bool:
        """True if either node suspended the other: their books may differ."""
        nodes = self.sim.nodes
        return bool(
            nodes[a].core.liability.peers[b].suspended or nodes[b].core.liability.peers[a].suspended
        )

    def _check_bonds(self, books: dict[NodeId, dict[tuple[str, str], int]]) -> None:
        sim = self.sim
        for asset, funded in sim.capital.items():
            per_node = funded // len(sim.ids)
            for a in sim.ids:
                posted = 0
                for b in sim.ids:
                    if a == b:
                        continue
                    here = books[a].get((f"bond-posted:{b}", asset), 0)
                    posted += here
                    if self._parted(a, b):
                        continue  # a bond claimed in a default is not given back
                    there = books[b].get((f"bond-held:{a}", asset), 0)
                    kept = books[b].get((f"collateral:{a}", asset), 0)
                    if here + there != 0 or kept != here:
                        self.fail(
                            f"{a}'s bond with {b}: posted {here}, held {-there}, "
                            f"collateral {kept} (invariant 1)"
                        )
                capital = books[a].get(("node:capital", asset), 0)
                if capital + posted != per_node:
                    self.fail(f"{a}: capital {capital} + bonds {posted} != {per_node} funded")

    def lock_outcomes(self) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        for node in self.sim.nodes.values():
            for name, count in node.core.stats.items():
                if name.startswith("lock_outcome:"):
                    outcomes[name.removeprefix("lock_outcome:")] += count
        return outcomes


def _balance(sim: Simulation, node_id: NodeId, owner: str, asset: str) -> int:
    from datn.domain.assets import AssetCode  # noqa: PLC0415

    return sim.nodes[node_id].core.context.ledger.balance(AccountKey(owner, AssetCode(asset)))


def _nonzero(amounts: Counter[str]) -> dict[str, int]:
    return {asset: amount for asset, amount in amounts.items() if amount}
