"""The node core: one deterministic state machine per clearing node.

Inputs (a trader's request, an operator's command, a peer's message, a
timer tick, a restart) come with ``now``; each returns effects (journal,
send, reply, set timer, publish, pay). Every input is journaled first, and
the node's state is a function of its journal, whose first entry is the
node's :class:`~datn.protocol.effects.Genesis`.

The core is a thin dispatcher over parts that each own their state (DESIGN.md
section 4 names the roles):

* :class:`~datn.protocol.traders.Traders`: answers to trader requests;
* :class:`~datn.protocol.resting.RestingOrders`: the node's books and its
  adverts to peers;
* :class:`~datn.protocol.originator.Originator`: orders being worked across
  the network, their acceptances and the holders they wait on;
* :class:`~datn.protocol.holder.Holder`: locks, decisions and answered
  broadcasts;
* :class:`~datn.protocol.liability.Liability`: bonds, exposure, settlement
  and defaults with each peer;
* :class:`~datn.protocol.network.NetworkView`: the network book, round trips
  and heartbeats;

and the :class:`~datn.protocol.context.Context` they share (identity, rules,
ledger, clocks, marks). The transition for each peer message is one method
of one part; the tables at the end of this module say which.

Nothing a peer sends can raise out of the core or leave it half-changed:
the stamp of every message is checked against the node's own clock before
anything else, and each handler checks what it reads before it writes.
Assertions state this node's own invariants: if one fails, the node's state
is in doubt and the process must stop (start-up is the recovery path).

A node rebuilt from its store (:meth:`NodeCore.recover`) takes no input but
its restart first, by construction: recovery returns a
:class:`Recovered`, and only its :meth:`~Recovered.restart` gives the node.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Final

import msgspec
from mypy_extensions import mypyc_attr

from datn.domain import DomainError, Order, ProductSpec
from datn.domain.bulk import collector_paused
from datn.domain.limits import MAX_AMOUNT_MINOR, check_int, check_text
from datn.domain.value import NodeId
from datn.ledger import LedgerError
from datn.protocol.clock import Hlc, Now
from datn.protocol.config import NodeConfig
from datn.protocol.context import Context
from datn.protocol.effects import (
    CORE_LOGIC_VERSION,
    AddPeerInput,
    AddProductInput,
    BondInput,
    BondReceivedInput,
    CancelAllInput,
    CancelAnswer,
    CancelInput,
    ConfigInput,
    DepositInput,
    Effect,
    FundInput,
    Genesis,
    GenesisInput,
    Input,
    Journal,
    JournalEntry,
    PlaceInput,
    ReceiveInput,
    ReinstateInput,
    Reply,
    RestartInput,
    SetTimer,
    TickInput,
    WithdrawInput,
)
from datn.protocol.holder import Holder
from datn.protocol.liability import CAPITAL_OWNER, Liability
from datn.protocol.messages import (
    Acceptance,
    Advert,
    BondAnswer,
    BondRequest,
    Confirmation,
    DefaultNotice,
    Heartbeat,
    Message,
    OrderBroadcast,
    PotentialTrades,
    Refusal,
    Release,
    StatementAnswer,
    StatementProposal,
    TradePrint,
)
from datn.protocol.network import NetworkView
from datn.protocol.originator import Originator
from datn.protocol.resting import RestingOrders
from datn.protocol.snapshot import SNAPSHOT_VERSION, NodeSnapshot
from datn.protocol.traders import Traders
from datn.protocol.venue import OrderRequest, trader_owner

__all__ = ["SNAPSHOT_VERSION", "NodeConfig", "NodeCore", "NodeSnapshot", "Recovered"]


_HASH_ENCODER: Final = msgspec.msgpack.Encoder(order="deterministic")


@mypyc_attr(native_class=False)  # compiled module; exceptions stay Python classes
class NodeError(Exception):
    """This node's own misuse of the core (never a peer's or a trader's input)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class NodeCore:
    """The state and rules of one node; see the module docstring."""

    traders_class: ClassVar[type[Traders]] = Traders
    resting_class: ClassVar[type[RestingOrders]] = RestingOrders
    holder_class: ClassVar[type[Holder]] = Holder
    originator_class: ClassVar[type[Originator]] = Originator
    liability_class: ClassVar[type[Liability]] = Liability
    network_class: ClassVar[type[NetworkView]] = NetworkView

    def __init__(self, genesis: Genesis) -> None:
        self._build(Context(genesis))
        self._needs_restart = False

    def _build(self, context: Context) -> None:
        self.context = context
        self.traders = self.traders_class(context)
        self.resting = self.resting_class(context, self.traders)
        self.liability = self.liability_class(context)
        self.holder = self.holder_class(context, self.resting, self.liability)
        self.liability.holder = self.holder
        self.network = self.network_class(context)
        self.originator = self.originator_class(
            context, self.traders, self.resting, self.holder, self.network, self.liability
        )
        self.traders.order_of = self._open_order

    def _open_order(self, order_id: int) -> Order | None:
        working = self.originator.working.get(order_id)
        if working is not None:
            return working.order
        meta = self.resting.orders.get(order_id)
        return None if meta is None else meta.order

    def has_open_order(self, trader_id: str, order_id: int) -> bool:
        """Whether ``order_id`` is an open order of ``trader_id``: being
        worked, or resting."""
        order = self._open_order(order_id)
        return order is not None and order.trader_id == trader_id

    @classmethod
    def start(cls, genesis: Genesis, now: Now) -> tuple[NodeCore, list[Effect]]:
        """A new node: its genesis is the first entry of its journal."""
        core = cls._born(genesis, now, CORE_LOGIC_VERSION)
        entry = JournalEntry(now, GenesisInput(genesis))
        return core, [Journal(entry), SetTimer(now.mono_ms)]

    @classmethod
    def _born(cls, genesis: Genesis, now: Now, logic_version: int) -> NodeCore:
        """The node ``genesis`` makes at ``now``, running core logic
        ``logic_version``: as it starts, and as its replay from the genesis
        entry rebuilds it."""
        core = cls(genesis)
        core.context.last_mono_ms = now.mono_ms
        core.context.logic_version = logic_version
        core.network.hear_all(now)
        return core

    @classmethod
    def recover(
        cls, journal: Iterable[JournalEntry], snapshot: NodeSnapshot | None = None
    ) -> Recovered:
        """A node rebuilt from its store: from ``snapshot`` (if any) and the
        journal entries after it, or from the whole journal (whose first entry
        is the genesis). Its first input must be its restart: see
        :class:`Recovered`."""
        with collector_paused():
            core = cls._replay(journal, snapshot)
        core._needs_restart = True
        return Recovered(core)

    @classmethod
    def replayed(
        cls, journal: Iterable[JournalEntry]
    ) -> Iterator[tuple[JournalEntry, list[Effect]]]:
        """A node's whole journal (its genesis first) replayed from nothing,
        with the effects each entry had when the node ran: the messages it
        sent, the answers it gave. For an audit of what a node did; a node
        to run is rebuilt with :meth:`recover`."""
        entries = iter(journal)
        first = next(entries, None)
        if first is None or not isinstance(first.input, GenesisInput):
            raise NodeError("a journal starts with the node's genesis")
        core, effects = cls.start(first.input.genesis, first.now)
        core.context.logic_version = first.input.logic_version
        yield first, effects
        for entry in entries:
            if isinstance(entry.input, GenesisInput):
                raise NodeError("a journal has one genesis, first")
            yield entry, core._apply(entry.input, entry.now)

    @classmethod
    def _replay(cls, journal: Iterable[JournalEntry], snapshot: NodeSnapshot | None) -> NodeCore:
        entries = iter(journal)
        if snapshot is None:
            first = next(entries, None)
            if first is None or not isinstance(first.input, GenesisInput):
                raise NodeError("a journal starts with the node's genesis")
            core = cls._born(first.input.genesis, first.now, first.input.logic_version)
        else:
            core = cls.from_snapshot(snapshot)
        for entry in entries:
            if isinstance(entry.input, GenesisInput):
                raise NodeError("a journal has one genesis, first")
            core._apply(entry.input, entry.now)
        return core

    # ================================================================ inputs

    def place(self, request: OrderRequest, now: Now) -> list[Effect]:
        return self.handle(PlaceInput(request), now)

    def cancel(self, trader_id: str, order_id: int, now: Now) -> list[Effect]:
        return self.handle(CancelInput(trader_id, order_id), now)

    def cancel_all(self, trader_id: str, now: Now, product_id: str | None = None) -> list[Effect]:
        return self.handle(CancelAllInput(trader_id, product_id), now)

    def deposit(self, trader_id: str, asset: str, amount: int, now: Now) -> list[Effect]:
        return self.handle(DepositInput(trader_id, asset, amount), now)

    def fund(self, asset: str, amount: int, now: Now) -> list[Effect]:
        """Add to the node's own capital, from which it posts bonds."""
        return self.handle(FundInput(asset, amount), now)

    def post_bond(self, peer: NodeId, amount: int, now: Now) -> list[Effect]:
        """Post ``amount`` more of the bond asset with ``peer``."""
        return self.handle(BondInput(peer, amount, False), now)

    def withdraw_bond(self, peer: NodeId, amount: int, now: Now) -> list[Effect]:
        """Ask ``peer`` to give back ``amount`` of the bond posted with it."""
        return self.handle(BondInput(peer, amount, True), now)

    def bond_received(
        self, peer: NodeId, bond_id: int, asset: str, amount: int, now: Now
    ) -> list[Effect]:
        """The rail (or the operator) reports a peer's bond money received."""
        return self.handle(BondReceivedInput(peer, bond_id, asset, amount), now)

    def reinstate(self, peer: NodeId, now: Now) -> list[Effect]:
        return self.handle(ReinstateInput(peer), now)

    def add_peer(self, peer: NodeId, now: Now) -> list[Effect]:
        return self.handle(AddPeerInput(peer), now)

    def add_product(
        self, product: ProductSpec, now: Now, reference_price_ticks: int | None = None
    ) -> list[Effect]:
        return self.handle(AddProductInput(product, reference_price_ticks), now)

    def set_config(self, config: NodeConfig, now: Now) -> list[Effect]:
        return self.handle(ConfigInput(config), now)

    def receive(self, sender: NodeId, hlc: Hlc, message: Message, now: Now) -> list[Effect]:
        return self.handle(ReceiveInput(sender, hlc, message), now)

    def tick(self, now: Now) -> list[Effect]:
        return self.handle(TickInput(), now)

    # ============================================================== dispatch

    def handle(self, event: Input, now: Now) -> list[Effect]:
        """Journal ``event``, then apply it: the effects, journal entry first."""
        if self._needs_restart:
            raise NodeError("a recovered node takes its restart before any other input")
        if isinstance(event, GenesisInput | RestartInput):
            raise NodeError("genesis and restart are not inputs of a running node")
        effects: list[Effect] = [Journal(JournalEntry(now, event))]
        self._apply_into(event, now, effects)
        return effects

    def _apply(self, event: Input, now: Now) -> list[Effect]:
        """Apply ``event`` (replay: the journal entry exists already)."""
        effects: list[Effect] = []
        self._apply_into(event, now, effects)
        return effects

    def _apply_into(self, event: Input, now: Now, out: list[Effect]) -> None:
        """What every input does around its handler: the time since the
        previous input (a pause of the node's own), then the input, then
        the time of this one."""
        context = self.context
        if context.logic_version >= 3:
            self.network.pause_not_silence(now.mono_ms - context.last_mono_ms, now)
        self._dispatch(event, now, out)
        context.last_mono_ms = now.mono_ms

    def _dispatch(self, event: Input, now: Now, out: list[Effect]) -> None:
        """The input's own handler."""
        _HANDLERS[type(event)](self, event, now, out)

    def _on_place(self, event: PlaceInput, now: Now, out: list[Effect]) -> None:
        self.originator.place(event.request, now, out)

    def _on_cancel(self, event: CancelInput, now: Now, out: list[Effect]) -> None:
        out.append(Reply(event.trader_id, self._cancel(event.trader_id, event.order_id, now, out)))

    def _cancel(self, trader_id: str, order_id: int, now: Now, out: list[Effect]) -> CancelAnswer:
        working = self.originator.working.get(order_id)
        if working is not None and working.order.trader_id == trader_id:
            return self.originator.cancel(order_id, now, out)
        meta = self.resting.orders.get(order_id)
        if meta is None or meta.order.trader_id != trader_id:
            return CancelAnswer(order_id, "unknown_order")
        return self.resting.cancel(order_id, now, out)

    def _on_cancel_all(self, event: CancelAllInput, now: Now, out: list[Effect]) -> None:
        trader_id, product_id = event.trader_id, event.product_id
        working = [
            order_id
            for order_id, w in self.originator.working.items()
            if w.order.trader_id == trader_id
            and (product_id is None or w.order.product_id == product_id)
        ]
        for order_id in working + self.resting.of_trader(trader_id, product_id):
            out.append(Reply(trader_id, self._cancel(trader_id, order_id, now, out)))

    def _on_deposit(self, event: DepositInput, now: Now, out: list[Effect]) -> None:
        if not _valid_text(event.trader_id):
            self.context.count("deposits_invalid")
            return
        self._bring_in("deposit", trader_owner(event.trader_id), event.asset, event.amount)

    def _on_withdraw(self, event: WithdrawInput, now: Now, out: list[Effect]) -> None:
        """Pay a trader out of what it has available, or change nothing."""
        context = self.context
        if not _valid_text(event.trader_id) or not self._valid_amount(event.asset, event.amount):
            context.count("withdrawals_invalid")
            return
        owner = trader_owner(event.trader_id)
        if context.ledger.available(context.key(owner, event.asset)) < event.amount:
            context.count("withdrawals_beyond_available")
            return
        try:
            context.ledger.withdraw(
                f"withdraw:{context.counter + 1}", owner, event.asset, event.amount
            )
        except LedgerError:
            context.count("withdrawals_refused")
            return
        context.next_counter()
        context.count("withdrawals")

    def _on_fund(self, event: FundInput, now: Now, out: list[Effect]) -> None:
        self._bring_in("fund", CAPITAL_OWNER, event.asset, event.amount)

    def _bring_in(self, kind: str, owner: str, asset: str, amount: object) -> None:
        """Credit ``owner`` from outside the node, or change nothing and count why not."""
        context = self.context
        if not self._valid_amount(asset, amount):
            context.count(f"{kind}_invalid")
            return
        entry_id = f"{kind}:{context.counter + 1}"
        try:
            context.ledger.deposit(entry_id, owner, asset, amount)
        except LedgerError:
            context.count(f"{kind}_refused")  # the balance would leave the 64-bit range
            return
        context.next_counter()

    def _valid_amount(self, asset: str, amount: object) -> bool:
        """An amount the ledger can take, of an asset this node knows."""
        if asset not in self.context.asset_codes:
            return False
        try:
            check_int("amount", amount, 1, MAX_AMOUNT_MINOR)
        except DomainError:
            return False
        return True

    def _on_bond(self, event: BondInput, now: Now, out: list[Effect]) -> None:
        self.liability.post_bond(event.peer, event.amount, event.withdraw, now, out)

    def _on_bond_received(self, event: BondReceivedInput, now: Now, out: list[Effect]) -> None:
        if type(event.amount) is not int or type(event.bond_id) is not int:
            self.context.count("bond_receipt_invalid")
            return
        self.liability.on_bond_received(
            event.peer, event.bond_id, event.asset, event.amount, now, out
        )

    def _on_reinstate(self, event: ReinstateInput, now: Now, out: list[Effect]) -> None:
        self.liability.reinstate(event.peer, now)

    def _on_add_peer(self, event: AddPeerInput, now: Now, out: list[Effect]) -> None:
        context, peer = self.context, event.peer
        if peer == context.node_id or peer in context.peers or not _valid_text(peer):
            context.count("peers_invalid")
            return
        context.peers = sorted([*context.peers, peer])
        self.liability.add_peer(peer)
        self.network.add_peer(peer, now)

    def _on_add_product(self, event: AddProductInput, now: Now, out: list[Effect]) -> None:
        context, product = self.context, event.product
        if not isinstance(product, ProductSpec) or product.product_id in context.products:
            context.count("products_invalid")
            return
        context.add_product(product)
        self.resting.add_product(product)
        if event.reference_price_ticks is not None:
            context.marks.add_opening(product.product_id, event.reference_price_ticks)
        listed = context.config.risk.listed_products
        if listed is not None:
            risk = dataclasses.replace(
                context.config.risk, listed_products=listed | {product.product_id}
            )
            context.config = dataclasses.replace(context.config, risk=risk)

    def _on_config(self, event: ConfigInput, now: Now, out: list[Effect]) -> None:
        if not isinstance(event.config, NodeConfig):
            self.context.count("config_invalid")
            return
        self.context.config = event.config
        # Silence is measured against the new heartbeat period from now.
        self.network.hear_all(now)

    def _on_receive(self, event: ReceiveInput, now: Now, out: list[Effect]) -> None:
        context = self.context
        sender = event.sender
        if sender not in self.liability.peers:
            context.count("dropped_unknown_sender")
            return
        if not context.clock.admits(event.hlc, now.wall_ms, context.config.max_clock_drift_ms):
            context.count("refused_clock_drift")
            return
        context.clock.observe_capped(event.hlc, now.wall_ms, context.config.max_clock_push_ms)
        context.hlc_in = event.hlc
        self.network.heard(sender, now)
        _MESSAGE_HANDLERS[type(event.message)](self, sender, event.message, now, out)

    def _on_tick(self, event: TickInput, now: Now, out: list[Effect]) -> None:
        self.holder.expire(now, out)
        self.originator.tick(now, out)
        self.liability.resend_bonds(now, out)
        if self.liability.any_unsettled():
            self.liability.settlement_cycle(now, out)
        if self.network.heartbeat(self.resting.advert_version, now, out):
            self.originator.rework_crossed(now, out)
        self.traders.forget_old(now)
        self.holder.forget_old(now)

    def _on_restart(self, event: RestartInput, now: Now, out: list[Effect]) -> None:
        """Re-base every deadline onto the new monotonic clock and void every
        lock: locks lived on the clock of a process that is gone."""
        delta_ms = now.mono_ms - self.context.last_mono_ms
        self.context.logic_version = event.logic_version
        self.holder.restart(delta_ms, now, out)
        self.originator.restart(delta_ms, now)
        self.liability.restart(delta_ms, now)
        self.network.restart(now)
        self.traders.rebase(delta_ms)
        out.append(SetTimer(now.mono_ms))

    # ------------------------------------------------------ peer messages

    def _on_broadcast(
        self, sender: NodeId, message: OrderBroadcast, now: Now, out: list[Effect]
    ) -> None:
        self.holder.on_broadcast(sender, message, now, out)

    def _on_potential_trades(
        self, sender: NodeId, message: PotentialTrades, now: Now, out: list[Effect]
    ) -> None:
        self.originator.on_potential_trades(sender, message, now, out)

    def _on_acceptance(
        self, sender: NodeId, message: Acceptance, now: Now, out: list[Effect]
    ) -> None:
        self.holder.on_acceptance(sender, message, now, out)

    def _on_release(self, sender: NodeId, message: Release, now: Now, out: list[Effect]) -> None:
        self.holder.on_release(sender, message, now, out)

    def _on_confirmation(
        self, sender: NodeId, message: Confirmation, now: Now, out: list[Effect]
    ) -> None:
        self.originator.on_confirmation(sender, message, now, out)

    def _on_refusal(self, sender: NodeId, message: Refusal, now: Now, out: list[Effect]) -> None:
        self.originator.on_refusal(sender, message, now, out)

    def _on_advert(self, sender: NodeId, message: Advert, now: Now, out: list[Effect]) -> None:
        if self.network.on_advert(sender, message, now, out):
            self.originator.on_advert(sender, message, now, out)

    def _on_heartbeat(
        self, sender: NodeId, message: Heartbeat, now: Now, out: list[Effect]
    ) -> None:
        self.network.on_heartbeat(sender, message, self.resting.advert_version, now, out)

    def _on_trade_print(
        self, sender: NodeId, message: TradePrint, now: Now, out: list[Effect]
    ) -> None:
        self.network.on_trade_print(sender, message, now, out)

    def _on_bond_request(
        self, sender: NodeId, message: BondRequest, now: Now, out: list[Effect]
    ) -> None:
        self.liability.on_bond_request(sender, message, now, out)

    def _on_bond_answer(
        self, sender: NodeId, message: BondAnswer, now: Now, out: list[Effect]
    ) -> None:
        self.liability.on_bond_answer(sender, message, now, out)

    def _on_statement_proposal(
        self, sender: NodeId, message: StatementProposal, now: Now, out: list[Effect]
    ) -> None:
        self.liability.on_statement_proposal(sender, message, now, out)

    def _on_statement_answer(
        self, sender: NodeId, message: StatementAnswer, now: Now, out: list[Effect]
    ) -> None:
        self.liability.on_statement_answer(sender, message, now, out)

    def _on_default_notice(
        self, sender: NodeId, message: DefaultNotice, now: Now, out: list[Effect]
    ) -> None:
        self.liability.on_default_notice(sender, message, now, out)

    # ============================================================ queries

    @property
    def node_id(self) -> NodeId:
        return self.context.node_id

    @property
    def config(self) -> NodeConfig:
        return self.context.config

    @property
    def stats(self) -> dict[str, int]:
        return self.context.stats

    def next_timer_ms(self) -> int | None:
        """The earliest monotonic time at which ``tick`` has something to do."""
        times = [lock.expires_mono_ms for lock in self.holder.locks.values()]
        for part in (self.originator.next_timer_ms(), self.liability.next_timer_ms()):
            if part is not None:
                times.append(part)
        if self.network.next_heartbeat_ms is not None:
            times.append(self.network.next_heartbeat_ms)
        return min(times) if times else None

    def status(self) -> dict[str, object]:
        """What an operator looks at: orders waiting on holders, suspended
        peers, locks, unsettled trades, and the counters."""
        liability = self.liability
        return {
            "node_id": self.node_id,
            "working_orders": len(self.originator.working),
            "resting_orders": len(self.resting.orders),
            "open_locks": len(self.holder.locks),
            "waiting_on_holders": self.originator.waiting_on(),
            "suspended_peers": {
                peer: view.suspended for peer, view in liability.peers.items() if view.suspended
            },
            "unsettled_trades": {
                peer: len(view.unsettled)
                for peer, view in liability.peers.items()
                if view.unsettled
            },
            "stats": dict(sorted(self.stats.items())),
        }

    # ============================================================ snapshot

    def snapshot(self) -> NodeSnapshot:
        if self._needs_restart:
            raise NodeError("a recovered node is snapshotted after its restart")
        return NodeSnapshot(
            SNAPSHOT_VERSION,
            self.context.snapshot(),
            self.traders.snapshot(),
            self.resting.snapshot(),
            self.holder.snapshot(),
            self.originator.snapshot(),
            self.liability.snapshot(),
            self.network.snapshot(),
            self._strategy_snapshot(),
        )

    @classmethod
    def from_snapshot(cls, snapshot: NodeSnapshot) -> NodeCore:
        if snapshot.version != SNAPSHOT_VERSION:
            raise NodeError(f"snapshot version {snapshot.version}, not {SNAPSHOT_VERSION}")
        core = cls(snapshot.context.genesis)
        core._build(Context.restore(snapshot.context))
        core.traders.restore(snapshot.traders)
        core.resting.restore(snapshot.resting)
        core.holder.restore(snapshot.holder)
        core.originator.restore(snapshot.originator)
        core.liability.restore(snapshot.liability)
        core.network.restore(snapshot.network)
        core._strategy_restore(snapshot.strategy)
        return core

    def _strategy_snapshot(self) -> bytes:
        """A strategy's own state (none for a plain node)."""
        return b""

    def _strategy_restore(self, state: bytes) -> None:
        """Restore what :meth:`_strategy_snapshot` gave."""

    def part_hashes(self) -> dict[str, str]:
        """A digest per part of the node's state, for finding where two differ."""
        snapshot = self._raw_snapshot()
        return {
            name: hashlib.sha256(_HASH_ENCODER.encode(getattr(snapshot, name))).hexdigest()
            for name in snapshot.__struct_fields__
            if name != "version"
        }

    def state_hash(self) -> str:
        """A digest of everything replay must reproduce: the hash of the
        node's snapshot, so it covers all state and none of its history."""
        return hashlib.sha256(_HASH_ENCODER.encode(self._raw_snapshot())).hexdigest()

    def _raw_snapshot(self) -> NodeSnapshot:
        needs_restart, self._needs_restart = self._needs_restart, False
        try:
            return self.snapshot()
        finally:
            self._needs_restart = needs_restart


class Recovered:
    """A node rebuilt from its store, before its restart. Its state can be
    compared with what it was; the only way to the running node is
    :meth:`restart`, so the restart is its first input by construction."""

    def __init__(self, core: NodeCore) -> None:
        self._core: NodeCore | None = core

    def state_hash(self) -> str:
        assert self._core is not None, "restarted already"
        return self._core.state_hash()

    @property
    def logic_version(self) -> int:
        """The core logic that wrote the journal's last entries: that of its
        latest genesis or restart entry."""
        assert self._core is not None, "restarted already"
        return self._core.context.logic_version

    @property
    def node_id(self) -> NodeId:
        assert self._core is not None, "restarted already"
        return self._core.node_id

    def snapshot(self) -> NodeSnapshot:
        """The state the store's bytes describe, before the restart: what the
        live node's snapshot was at the same journal position (replay is
        deterministic), so a snapshot can be built away from the live node."""
        assert self._core is not None, "restarted already"
        return self._core._raw_snapshot()

    def restart(self, now: Now) -> tuple[NodeCore, list[Effect]]:
        """Restart the node on its new clock: its journal gets the restart
        input, and every lock it held before is void."""
        core = self._core
        if core is None:
            raise NodeError("a recovered node restarts once")
        self._core = None
        core._needs_restart = False
        effects: list[Effect] = [Journal(JournalEntry(now, RestartInput()))]
        core._apply_into(RestartInput(), now, effects)
        return core, effects


def _valid_text(value: object) -> bool:
    try:
        check_text("id", value)
    except DomainError:
        return False
    return True


_Handler = Callable[[NodeCore, Any, Now, list[Effect]], None]
_MessageHandler = Callable[[NodeCore, NodeId, Any, Now, list[Effect]], None]

_HANDLERS: Final[dict[type, _Handler]] = {
    PlaceInput: NodeCore._on_place,
    CancelInput: NodeCore._on_cancel,
    CancelAllInput: NodeCore._on_cancel_all,
    DepositInput: NodeCore._on_deposit,
    FundInput: NodeCore._on_fund,
    WithdrawInput: NodeCore._on_withdraw,
    BondInput: NodeCore._on_bond,
    BondReceivedInput: NodeCore._on_bond_received,
    ReinstateInput: NodeCore._on_reinstate,
    AddPeerInput: NodeCore._on_add_peer,
    AddProductInput: NodeCore._on_add_product,
    ConfigInput: NodeCore._on_config,
    ReceiveInput: NodeCore._on_receive,
    TickInput: NodeCore._on_tick,
    RestartInput: NodeCore._on_restart,
}
"""Which method applies each input."""

_MESSAGE_HANDLERS: Final[dict[type, _MessageHandler]] = {
    OrderBroadcast: NodeCore._on_broadcast,
    PotentialTrades: NodeCore._on_potential_trades,
    Acceptance: NodeCore._on_acceptance,
    Release: NodeCore._on_release,
    Confirmation: NodeCore._on_confirmation,
    Refusal: NodeCore._on_refusal,
    Advert: NodeCore._on_advert,
    Heartbeat: NodeCore._on_heartbeat,
    TradePrint: NodeCore._on_trade_print,
    BondRequest: NodeCore._on_bond_request,
    BondAnswer: NodeCore._on_bond_answer,
    StatementProposal: NodeCore._on_statement_proposal,
    StatementAnswer: NodeCore._on_statement_answer,
    DefaultNotice: NodeCore._on_default_notice,
}
"""Which part handles each peer message: the transition for a message is one
method of one part."""
