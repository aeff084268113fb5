"""Clearing with each peer (DESIGN.md section 7): what a node does as its
peers' creditor and debtor.

Bonds. A node posts a bond with a peer by claiming one; the peer counts it
only once its own settlement rail reports the money received (an adapter,
or its operator confirming), so a peer that merely asserts a bond gets no
quota. A poster sends one bond request to a peer at a time, numbered
1, 2, 3... per pair, and pays once the peer says it awaits the funds; both
ledgers book the bond when the peer answers that it has.

Exposure. What a peer owes, marked at prices that peer does not set (see
:mod:`~datn.protocol.marks`), plus the locks held open for it; a holder
offers no lock past the cap the peer's bond allows, within a lock quota that
shrinks for a peer that locks much and takes little.

Settlement. Each cycle the lower id of a pair proposes a statement of the
trades both booked, and the net moves over the rail only when the other side
reproduces it.

Default. A peer with a trade unsettled past the deadline is suspended, its
bond claimed for what it owes and the rest recorded as a loss, and every
other peer is told. A default is an event, not an end: the trades stay on
record, and when the operator reinstates the peer the claim and loss are
reversed and the trades settle as usual; a peer may default again later,
each default with entries of its own.

The rules themselves are pure functions in :mod:`datn.clearing`; this part
applies them to the node's ledger and keeps the per-peer state they need.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from datn.clearing.exposure import exposure, exposure_cap, marked_value
from datn.clearing.quota import AcceptanceRatio, TokenBucket, lock_quota
from datn.clearing.settlement import (
    Deltas,
    build_statement,
    net_of,
    reproduce,
    statement_hash,
)
from datn.domain import AssetCode, ProductSpec
from datn.domain.value import NodeId
from datn.ledger import EXTERNAL, UNBOUNDED, AccountKey, Entry, EntryId, HoldId, HoldUse, Posting
from datn.protocol.clock import Now
from datn.protocol.context import OTHER_REASON, Context
from datn.protocol.effects import Effect, Pay, SetTimer, Violation
from datn.protocol.messages import (
    BondAnswer,
    BondRequest,
    DefaultNotice,
    Message,
    StatementAnswer,
    StatementProposal,
)
from datn.protocol.snapshot import DefaultRecord, LiabilityState, PeerClearingState

if TYPE_CHECKING:
    from datn.protocol.holder import Holder

CAPITAL_OWNER: Final = "node:capital"
"""The node's own money: what it posts as bond comes from here."""
LOSSES_OWNER: Final = "node:losses"
"""What peers in default owed this node beyond their bonds: its recorded loss."""
AWAITING_FUNDS: Final = "awaiting_funds"
"""A bond answer that is not final: the holder accepts the claim and waits
for its rail to report the money."""
BOND_REASONS: Final = frozenset(
    {
        "wrong_asset",
        "bad_amount",
        "beyond_bond",
        "locks_open",
        "owing",
        "bad_sequence",
        "suspended",
        "receipt_mismatch",
        "unsettled",
    }
)
STATEMENT_LOCKS: Final = 4_096
"""Trades a settlement statement holds at most: with 64-bit lock ids, about
37 KB, well inside a frame (a frame holds about 7,200 such ids). A pair
that trades more in a cycle settles the oldest, and the rest in the next
cycles."""
STATEMENT_REASONS: Final = frozenset(
    {
        "not_our_pair",
        "unknown_trades",
        "different_terms",
        "out_of_turn",
        "empty",
        "suspended",
        "hash",
    }
)


def peer_owner(node_id: str) -> str:
    """The ledger owner of a peer's accounts at this node: what it owes and is owed."""
    return f"peer:{node_id}"


def bond_posted_owner(node_id: str) -> str:
    """The bond this node posted with ``node_id``: its own cash, pledged there."""
    return f"bond-posted:{node_id}"


def bond_held_owner(node_id: str) -> str:
    """The bond ``node_id`` posted with this node, as owed back to it
    (negative). It mirrors that peer's ``bond-posted`` account here."""
    return f"bond-held:{node_id}"


def rail_owner(node_id: str) -> str:
    """The settlement rail to ``node_id``, as seen from this ledger: an external
    account, since what is settled leaves this ledger for the peer's."""
    return f"rail:{node_id}"


def collateral_owner(node_id: str) -> str:
    """Where this node keeps the cash a peer posted with it as bond."""
    return f"collateral:{node_id}"


def known_reason(reason: str, known: frozenset[str]) -> str:
    """A peer's reason as a counter may name it: its own text only if known."""
    return reason if reason in known else OTHER_REASON


@dataclass(slots=True)
class PeerAccounts:
    """The keys of the ledger accounts this node keeps for one peer, each
    built once: a key built once is not validated again."""

    peer: dict[str, AccountKey] | None = None
    """What the peer owes and is owed, by asset (None until the first trade)."""
    rail: dict[str, AccountKey] = field(default_factory=dict)
    bond_held: AccountKey | None = None
    collateral: AccountKey | None = None
    bond_posted: AccountKey | None = None


@dataclass(slots=True)
class PeerClearing:
    """Everything this node keeps to clear with one peer."""

    # Bonds this node posted with the peer.
    bond_posted: int = 0
    """What this node posted with the peer, as the peer acknowledged."""
    next_bond_id: int = 0
    outgoing: BondRequest | None = None
    """The bond request the peer has not answered finally yet (one at a time)."""
    outgoing_paid: bool = False
    queued: list[BondRequest] = field(default_factory=list)
    bond_resend_mono_ms: int = 0
    # Bonds the peer posted with this node.
    bond_held: int = 0
    """What the peer posted with this node, received and booked."""
    last_bond_id: int = 0
    last_answer: BondAnswer | None = None
    claim: BondRequest | None = None
    """A posting the peer claimed whose money has not arrived yet."""
    receipts: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Money the rail reported received, by bond id, not claimed yet."""
    received: int = 0
    """Bond money received from the peer over the rail, in all."""
    returned: int = 0
    """Bond money paid back to the peer, in all."""
    # Lock quota.
    broadcasts: TokenBucket | None = None
    ratio: AcceptanceRatio | None = None
    # Settlement.
    cycle: int = 0
    """The last settlement cycle of this pair that was answered."""
    proposal: StatementProposal | None = None
    """As the lower id: the statement proposed and not yet answered."""
    proposal_resend_mono_ms: int = 0
    last_statement_answer: StatementAnswer | None = None
    """As the higher id: the answer to the latest cycle, repeated on retries
    (the lower id proposes one statement at a time)."""
    settled: int = 0
    """How many statements this node has settled with the peer: two peers that
    count alike have settled the same statements."""
    unsettled: dict[int, Deltas] = field(default_factory=dict)
    """Trades not settled yet: lock id -> what each changed in the peer's
    accounts here."""
    unsettled_at: dict[int, int] = field(default_factory=dict)
    """When each unsettled trade was booked (monotonic ms)."""
    # Default.
    suspended: str = ""
    """Why this node trades no more with the peer ("" while it does)."""
    defaults: int = 0
    """How many times this node declared the peer in default."""
    open_defaults: list[DefaultRecord] = field(default_factory=list)
    witnesses: dict[NodeId, None] = field(default_factory=dict)
    """Other peers that declared this peer in default."""
    declared_us: int = 0
    """How many times the peer declared this node in default."""
    violations: deque[tuple[str, int]] = field(default_factory=deque)
    """The peer's latest protocol violations: reason, monotonic ms."""
    accounts: PeerAccounts = field(default_factory=PeerAccounts)


@mypyc_attr(allow_interpreted_subclasses=True)  # strategies and tests extend it
class Liability:
    """Bonds, exposure, settlement and default, per peer; see the module docstring."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.peers: dict[NodeId, PeerClearing] = {p: PeerClearing() for p in context.peers}
        self.holder: Holder | None = None
        """Set by the node core: a suspension ends the locks held for the peer."""
        self._bonding: set[NodeId] = set()
        """Peers with a bond request of this node's out (what ticks resend)..."""
        self._trading: set[NodeId] = set()
        """...and peers with trades not settled yet (what a settlement cycle
        looks at): a node with hundreds of peers works on those only. Both
        are read in sorted order, so they decide nothing by their history."""
        self._next_settlement_mono_ms: int | None = None
        asset = AssetCode(context.config.clearing.bond_asset)
        self._capital = AccountKey(CAPITAL_OWNER, asset)

    def add_peer(self, peer: NodeId) -> None:
        self.peers.setdefault(peer, PeerClearing())

    def suspended(self, peer: NodeId) -> bool:
        return bool(self.peers[peer].suspended)

    def unsettled(self, peer: NodeId) -> dict[int, Deltas]:
        return self.peers[peer].unsettled

    def any_unsettled(self) -> bool:
        return bool(self._trading)

    # ============================================================= accounts

    def peer_account(self, peer: NodeId) -> str:
        """The ledger owner of ``peer``'s accounts, opened on its first trade."""
        self.peer_keys(peer)
        return peer_owner(peer)

    def peer_keys(self, peer: NodeId) -> dict[str, AccountKey]:
        """``peer``'s accounts by asset, opened on its first trade: a node
        with hundreds of peers keeps accounts only for those it trades with
        (an account never opened reads as zero)."""
        accounts = self.peers[peer].accounts
        keys = accounts.peer
        assets = self.context.asset_codes
        if keys is None or len(keys) != len(assets):
            owner = peer_owner(peer)
            ledger = self.context.ledger
            keys = accounts.peer = {
                asset: ledger.open_account(owner, asset, UNBOUNDED) for asset in assets
            }
        return keys

    # ================================================================ bonds

    def post_bond(
        self, peer: NodeId, amount: int, withdraw: bool, now: Now, out: list[Effect]
    ) -> None:
        """Ask a peer to hold more bond, or to give some back. Posting holds
        the capital until the peer has booked it; both sides book only then."""
        context = self.context
        view = self.peers.get(peer)
        if view is None or type(amount) is not int or amount <= 0:
            context.count("bond_request_invalid")
            return
        asset = context.config.clearing.bond_asset
        if withdraw:
            pending = [r for r in (view.outgoing, *view.queued) if r is not None and r.withdraw]
            if amount > view.bond_posted - sum(r.amount for r in pending):
                context.count("bond_withdraw_beyond_posted")
                return
        elif context.ledger.available(self._capital) < amount:
            context.count("bond_post_without_capital")
            return
        view.next_bond_id += 1
        request = BondRequest(view.next_bond_id, asset, amount, withdraw)
        if not withdraw:
            context.ledger.place_hold(self._bond_hold(peer, request.bond_id), self._capital, amount)
        view.queued.append(request)
        self._send_next_bond(peer, view, now, out)

    @staticmethod
    def _bond_hold(peer: NodeId, bond_id: int) -> str:
        return f"bond:{peer}:{bond_id}"

    def _send_next_bond(
        self, peer: NodeId, view: PeerClearing, now: Now, out: list[Effect]
    ) -> None:
        if view.outgoing is not None or not view.queued:
            return
        view.outgoing = view.queued.pop(0)
        view.outgoing_paid = False
        self._bonding.add(peer)
        self.context.send(peer, view.outgoing, now, out)
        view.bond_resend_mono_ms = now.mono_ms + self.context.config.clearing.bond_resend_ms
        out.append(SetTimer(view.bond_resend_mono_ms))

    def on_bond_request(
        self, sender: NodeId, message: BondRequest, now: Now, out: list[Effect]
    ) -> None:
        """As holder of a peer's bond: requests come one at a time, numbered
        1, 2, 3...; a retry of the latest gets its answer again."""
        view = self.peers[sender]
        if message.bond_id == view.last_bond_id and view.last_answer is not None:
            self.context.send(sender, view.last_answer, now, out)
            return
        if message.bond_id != view.last_bond_id + 1:
            self.context.count("bond_refused:bad_sequence")
            self.context.send(sender, BondAnswer(message.bond_id, "bad_sequence"), now, out)
            return
        reason = self._check_bond(sender, view, message)
        if reason:
            self._answer_bond(sender, view, BondAnswer(message.bond_id, reason), now, out)
            self.context.count(f"bond_refused:{reason}")
            return
        if message.withdraw:
            self._book_held(sender, view, message.bond_id, -message.amount)
            out.append(Pay(sender, "bond_return", message.bond_id, message.asset, message.amount))
            view.returned += message.amount
            self._answer_bond(sender, view, BondAnswer(message.bond_id, ""), now, out)
            return
        view.claim = message
        if not self._claim_funded(sender, view, now, out):
            self.context.send(sender, BondAnswer(message.bond_id, AWAITING_FUNDS), now, out)

    def _check_bond(self, peer: NodeId, view: PeerClearing, request: BondRequest) -> str:
        if request.asset != self.context.config.clearing.bond_asset:
            return "wrong_asset"
        if request.amount <= 0:
            return "bad_amount"
        if request.withdraw:
            collateral = AccountKey(collateral_owner(peer), AssetCode(request.asset))
            if request.amount > min(view.bond_held, self.context.ledger.balance(collateral)):
                return "beyond_bond"
            if view.suspended:
                return "suspended"
            assert self.holder is not None
            if self.holder.open_for(peer)[1]:
                return "locks_open"
            if self.marked(peer) < 0:
                return "owing"
            if view.unsettled and self.context.logic_version >= 6:
                # A position marked at nothing owed now may owe tomorrow: the
                # bond stays while trades it backs are not settled.
                return "unsettled"
        return ""

    def on_bond_received(
        self, peer: NodeId, bond_id: int, asset: str, amount: int, now: Now, out: list[Effect]
    ) -> None:
        """The rail reports money from ``peer`` for its bond ``bond_id``."""
        context = self.context
        view = self.peers.get(peer)
        if view is None or asset != context.config.clearing.bond_asset or amount <= 0:
            context.count("bond_receipt_invalid")
            return
        if bond_id <= view.last_bond_id or bond_id in view.receipts:
            context.count("bond_receipt_repeated")
            return
        if len(view.receipts) >= context.config.clearing.max_receipts_per_peer:
            context.count("bond_receipt_over_limit")
            return
        view.receipts[bond_id] = (asset, amount)
        view.received += amount
        self._claim_funded(peer, view, now, out)

    def _claim_funded(self, peer: NodeId, view: PeerClearing, now: Now, out: list[Effect]) -> bool:
        """Book the peer's claimed posting if its money has arrived."""
        claim = view.claim
        if claim is None:
            return False
        receipt = view.receipts.get(claim.bond_id)
        if receipt is None:
            return False
        del view.receipts[claim.bond_id]
        view.claim = None
        if receipt != (claim.asset, claim.amount):
            # Not the money claimed: the claim ends refused, for good, and the
            # money goes back, so neither side waits on it forever.
            asset, amount = receipt
            out.append(Pay(peer, "bond_return", claim.bond_id, asset, amount))
            view.returned += amount
            self.context.count("bond_receipt_mismatch")
            answer = BondAnswer(claim.bond_id, "receipt_mismatch")
            self._answer_bond(peer, view, answer, now, out)
            return True
        self._book_held(peer, view, claim.bond_id, claim.amount)
        self.context.count("bond_requests_done")
        self._answer_bond(peer, view, BondAnswer(claim.bond_id, ""), now, out)
        return True

    def _book_held(self, peer: NodeId, view: PeerClearing, bond_id: int, amount: int) -> None:
        ledger = self.context.ledger
        accounts = view.accounts
        held, collateral = accounts.bond_held, accounts.collateral
        if held is None or collateral is None:
            asset = self.context.config.clearing.bond_asset
            held = accounts.bond_held = ledger.open_account(bond_held_owner(peer), asset, UNBOUNDED)
            collateral = accounts.collateral = ledger.open_account(collateral_owner(peer), asset)
        entry = Entry(
            EntryId(f"bond-held:{peer}:{bond_id}"),
            (Posting(held, -amount), Posting(collateral, amount)),
        )
        ledger.post(entry)
        view.bond_held += amount

    def _answer_bond(
        self, peer: NodeId, view: PeerClearing, answer: BondAnswer, now: Now, out: list[Effect]
    ) -> None:
        view.last_bond_id = answer.bond_id
        view.last_answer = answer
        self.context.send(peer, answer, now, out)

    def on_bond_answer(
        self, sender: NodeId, message: BondAnswer, now: Now, out: list[Effect]
    ) -> None:
        """As poster: the peer booked, refused, or awaits the money of a request."""
        context = self.context
        view = self.peers[sender]
        request = view.outgoing
        if request is None or request.bond_id != message.bond_id:
            return  # a repeated answer
        if message.reason == AWAITING_FUNDS:
            if not request.withdraw and not view.outgoing_paid:
                view.outgoing_paid = True
                out.append(Pay(sender, "bond", request.bond_id, request.asset, request.amount))
            return
        view.outgoing = None
        self._bonding.discard(sender)
        hold = None if request.withdraw else self._bond_hold(sender, request.bond_id)
        if (
            message.reason
            and message.reason != "receipt_mismatch"
            and view.outgoing_paid
            and context.logic_version >= 6
        ):
            # The peer asked for the money, was paid, and then refused: only
            # a returned payment (receipt_mismatch) ends a paid request so.
            # The money is with the peer: booked as posted with it, and the
            # peer is suspended on its signed answer.
            self._book_posted(sender, view, request, hold)
            self.violation(sender, "bond_refused_after_payment", (message,), now, out)
        elif message.reason:
            if hold is not None:
                context.ledger.release_hold(hold)
            context.count(f"bond_refused_by_peer:{known_reason(message.reason, BOND_REASONS)}")
        else:
            self._book_posted(sender, view, request, hold)
        self._send_next_bond(sender, view, now, out)

    def _book_posted(
        self, peer: NodeId, view: PeerClearing, request: BondRequest, hold: str | None
    ) -> None:
        ledger = self.context.ledger
        posted = view.accounts.bond_posted
        if posted is None:
            posted = view.accounts.bond_posted = ledger.open_account(
                bond_posted_owner(peer), request.asset
            )
        amount = -request.amount if request.withdraw else request.amount
        entry = Entry(
            EntryId(f"bond-posted:{peer}:{request.bond_id}"),
            (Posting(self._capital, -amount), Posting(posted, amount)),
            () if hold is None else (HoldUse(HoldId(hold), request.amount),),
        )
        ledger.post(entry)
        view.bond_posted += amount

    def resend_bonds(self, now: Now, out: list[Effect]) -> None:
        resend_ms = self.context.config.clearing.bond_resend_ms
        for peer in sorted(self._bonding):
            view = self.peers[peer]
            if view.outgoing is not None and now.mono_ms >= view.bond_resend_mono_ms:
                self.context.send(peer, view.outgoing, now, out)
                view.bond_resend_mono_ms = now.mono_ms + resend_ms
                out.append(SetTimer(view.bond_resend_mono_ms))

    # ============================================================= exposure

    def marked(self, peer: NodeId) -> int:
        """The peer's accounts here, in the bond asset, each product marked at
        a price the peer does not set: positive, this node owes the peer;
        negative, it is owed."""
        keys = self.peers[peer].accounts.peer
        if keys is None:
            return 0
        context = self.context
        balance = context.ledger.balance
        balances = {asset: balance(key) for asset, key in keys.items()}
        marks: dict[str, int] = {}
        for asset, amount in balances.items():
            if amount and asset in context.products:
                mark = context.marks.mark(asset, peer)
                if mark is not None:
                    marks[asset] = mark
        return marked_value(balances, context.products, marks, context.config.clearing.bond_asset)

    def lock_budget(self, originator: NodeId, now: Now) -> tuple[int, int, str]:
        """How much notional, and how many locks, this node may still offer
        ``originator``: the lesser of its lock quota and its exposure room;
        with the limit that binds (the reason, if that is nothing)."""
        view = self.peers[originator]
        clearing = self.context.config.clearing
        if view.suspended:
            return 0, 0, "suspended"
        if view.bond_held <= 0:
            return 0, 0, "no_bond"
        if view.broadcasts is None:
            view.broadcasts = TokenBucket(
                clearing.quota.broadcasts_per_s, clearing.quota.broadcast_burst, now.mono_ms
            )
        if not view.broadcasts.take(now.mono_ms):
            return 0, 0, "broadcast_rate"
        ratio = self._ratio(view, now).permille(now.mono_ms, clearing.quota.ratio_min_offered_minor)
        quota = lock_quota(view.bond_held, ratio, clearing.quota)
        cap = exposure_cap(view.bond_held, clearing.exposure_multiple_percent)
        assert self.holder is not None
        lock_notional, lock_count = self.holder.open_for(originator)
        room = cap - exposure(self.marked(originator), lock_notional)
        quota_left = quota.max_lock_notional - lock_notional
        binding = "exposure_cap" if room < quota_left else "lock_quota"
        notional = min(quota_left, room)
        count = quota.max_locks - lock_count
        if notional <= 0 or count <= 0:
            return 0, 0, binding if notional <= 0 else "lock_quota"
        return notional, count, binding

    def posted_cap(self, holder: NodeId) -> int:
        """The most this node, as originator, may owe ``holder``, marked:
        what its bond there allows."""
        multiple = self.context.config.clearing.exposure_multiple_percent
        return exposure_cap(self.peers[holder].bond_posted, multiple)

    def offered(self, originator: NodeId, notional: int, now: Now) -> None:
        self._ratio(self.peers[originator], now).offer(notional, now.mono_ms)

    def taken(self, originator: NodeId, notional: int, now: Now) -> None:
        self._ratio(self.peers[originator], now).take(notional, now.mono_ms)

    def _ratio(self, view: PeerClearing, now: Now) -> AcceptanceRatio:
        if view.ratio is None:
            half_life = self.context.config.clearing.quota.ratio_half_life_ms
            view.ratio = AcceptanceRatio(half_life, now.mono_ms)
        return view.ratio

    # ============================================================ settlement

    def unsettled_trade(
        self,
        peer: NodeId,
        lock_id: int,
        product: ProductSpec,
        peer_buys: bool,
        lots: int,
        price_ticks: int,
        now: Now,
    ) -> None:
        """Remember what a trade changed in ``peer``'s accounts here, for the
        next settlement statement of the pair."""
        notional = product.notional_minor(lots, price_ticks)
        cash, delivered = (-notional, lots) if peer_buys else (notional, -lots)
        deltas = tuple(sorted(((product.quote_currency, cash), (product.product_id, delivered))))
        view = self.peers[peer]
        view.unsettled[lock_id] = deltas
        view.unsettled_at[lock_id] = now.mono_ms
        self._trading.add(peer)

    def settlement_cycle(self, now: Now, out: list[Effect]) -> None:
        """As the lower id of a pair: propose the statement of every trade not
        settled yet; resend one still unanswered. Declare a peer whose trades
        stay unsettled past the deadline in default."""
        context = self.context
        clearing = context.config.clearing
        due = self._next_settlement_mono_ms
        if due is None or now.mono_ms >= due:
            due = now.mono_ms + clearing.settlement_cycle_ms
            ripe = now.mono_ms - clearing.settlement_lag_ms
            overdue = now.mono_ms - clearing.settlement_deadline_ms
            for peer in sorted(self._trading):
                view = self.peers[peer]
                if not self._settles(view):
                    continue
                if min(view.unsettled_at.values()) <= overdue:
                    self._declare_default(peer, view, now, out)
                    continue
                if context.node_id < peer and view.proposal is None:
                    at = view.unsettled_at
                    ripe_ids = [k for k in view.unsettled if at[k] <= ripe]
                    if len(ripe_ids) > STATEMENT_LOCKS:
                        # The oldest first; the rest wait for the next cycle.
                        ripe_ids.sort(key=lambda k: (at[k], k))
                        del ripe_ids[STATEMENT_LOCKS:]
                    trades = {k: view.unsettled[k] for k in ripe_ids}
                    if trades:
                        statement = build_statement(context.node_id, peer, view.cycle + 1, trades)
                        view.proposal = StatementProposal(statement)
                        view.proposal_resend_mono_ms = now.mono_ms
            self._next_settlement_mono_ms = due
            out.append(SetTimer(due))
        for peer in sorted(self._trading):
            view = self.peers[peer]
            if (
                view.proposal is not None
                and self._settles(view)
                and now.mono_ms >= view.proposal_resend_mono_ms
            ):
                context.send(peer, view.proposal, now, out)
                view.proposal_resend_mono_ms = now.mono_ms + clearing.bond_resend_ms
                out.append(SetTimer(view.proposal_resend_mono_ms))

    def on_statement_proposal(
        self, sender: NodeId, message: StatementProposal, now: Now, out: list[Effect]
    ) -> None:
        """As the higher id: settle the proposed statement if this node's own
        records give the same one; answer each cycle once, the same way on
        every retry."""
        context = self.context
        view = self.peers[sender]
        statement = message.statement
        last = view.last_statement_answer
        if last is not None and last.cycle == statement.cycle:
            context.send(sender, last, now, out)
            return
        mine, reason = reproduce(statement, context.node_id, view.unsettled)
        if statement.low != sender or statement.cycle <= view.cycle:
            mine, reason = None, "out_of_turn"
        elif not self._settles(view):
            mine, reason = None, "suspended"
        elif not statement.lock_ids:
            mine, reason = None, "empty"
        answer = StatementAnswer(statement.cycle, statement_hash(mine or statement), reason)
        if reason == "out_of_turn":
            # Not this pair's next cycle: answered, but nothing is recorded,
            # so a peer's stray numbers cannot displace the real answer.
            context.count("statements_refused:out_of_turn")
            context.send(sender, answer, now, out)
            return
        if mine is not None and not reason:
            self._settle(sender, view, statement.cycle, statement.lock_ids)
            view.cycle = statement.cycle
        else:
            context.count(f"statements_refused:{known_reason(reason, STATEMENT_REASONS)}")
        view.last_statement_answer = answer
        context.send(sender, answer, now, out)

    def on_statement_answer(
        self, sender: NodeId, message: StatementAnswer, now: Now, out: list[Effect]
    ) -> None:
        """As the lower id: the peer settled (or refused) the proposal."""
        view = self.peers[sender]
        proposal = view.proposal
        if proposal is None or proposal.statement.cycle != message.cycle:
            return  # a repeated answer
        if not self._settles(view) and self.context.logic_version >= 6:
            # Held in default: nothing settles until the operator reinstates
            # the peer, and the proposal is kept, to be sent again then (the
            # peer may have settled it: its answer for the cycle stands).
            self.context.count("statements_answered_while_suspended")
            return
        view.proposal = None
        view.cycle = max(view.cycle, message.cycle)
        statement = proposal.statement
        if message.reason or message.statement_hash != statement_hash(statement):
            # Flagged, nothing moves; the trades stay open for the next cycle.
            reason = known_reason(message.reason or "hash", STATEMENT_REASONS)
            self.context.count(f"statements_mismatched:{reason}")
            return
        if not self._settles(view):
            # Suspended while the proposal was out: under an open default
            # claim nothing is settled until the operator reinstates the peer.
            self.context.count("statements_answered_while_suspended")
            return
        self._settle(sender, view, statement.cycle, statement.lock_ids)

    def _settle(
        self, peer: NodeId, view: PeerClearing, cycle: int, lock_ids: tuple[int, ...]
    ) -> None:
        """Move the net of ``lock_ids`` over the built-in rail: out of the
        peer's accounts here, into the rail account that mirrors the peer's."""
        unsettled, booked = view.unsettled, view.unsettled_at
        net = net_of(unsettled.pop(lock_id) for lock_id in lock_ids)
        for lock_id in lock_ids:
            del booked[lock_id]
        if not unsettled:
            self._trading.discard(peer)
        ledger = self.context.ledger
        keys = self.peer_keys(peer)
        rails = view.accounts.rail
        postings = []
        for asset, amount in net:
            rail = rails.get(asset)
            if rail is None:
                rail = rails[asset] = ledger.open_account(rail_owner(peer), asset, EXTERNAL)
            postings.append(Posting(keys[asset], -amount))
            postings.append(Posting(rail, amount))
        if postings:
            ledger.post(Entry(EntryId(f"settle:{peer}:{cycle}"), tuple(postings)))
        view.settled += 1
        if self.context.logic_version >= 6:
            # The peer settles with this node: other peers' notices of its
            # default, older than this, are no longer news (a notice counts
            # towards suspending it only until then).
            view.witnesses.clear()
        self.context.count("statements_settled")
        assert self.holder is not None
        self.holder.settled(lock_ids)

    def _settles(self, view: PeerClearing) -> bool:
        """Whether this node settles with the peer of ``view``: not while it
        holds the peer in default (its bond claimed, its loss booked). From
        core logic 6 a peer suspended for a violation or on other peers'
        notices still settles what it traded, and is declared in default if
        it does not; before, any suspension stopped settlement, so that a
        hostile peer could dodge its default by a violation, and one
        suspended on notices alone was driven into declaring this node in
        default."""
        if self.context.logic_version >= 6:
            return view.suspended != "default"
        return not view.suspended

    def settling(self) -> bool:
        """True while a proposed statement waits for its answer."""
        return any(self.peers[peer].proposal is not None for peer in self._trading)

    # ================================================================ default

    def _declare_default(
        self, peer: NodeId, view: PeerClearing, now: Now, out: list[Effect]
    ) -> None:
        """``peer`` did not settle by the deadline: suspend it, close out what
        it owes against its bond, record the rest as this node's loss, and
        tell every other peer. Its trades stay on record for reconciliation."""
        ledger = self.context.ledger
        asset = AssetCode(self.context.config.clearing.bond_asset)
        view.defaults += 1
        number = view.defaults
        shortfall = max(0, -self.marked(peer))
        collateral = AccountKey(collateral_owner(peer), asset)
        claimed = min(shortfall, ledger.balance(collateral))
        loss = shortfall - claimed
        owner = AccountKey(self.peer_account(peer), asset)
        if claimed:
            ledger.post(
                Entry(
                    EntryId(f"claim:{peer}:{number}"),
                    (Posting(collateral, -claimed), Posting(owner, claimed)),
                )
            )
        if loss:
            losses = ledger.open_account(LOSSES_OWNER, asset, UNBOUNDED)
            ledger.post(
                Entry(
                    EntryId(f"loss:{peer}:{number}"),
                    (Posting(losses, -loss), Posting(owner, loss)),
                )
            )
        view.open_defaults.append(DefaultRecord(number, claimed, loss))
        if self.context.logic_version < 6:
            # Dropped, so that a pair whose answer was lost proposed the same
            # cycle with other trades after reinstatement, and never healed.
            view.proposal = None
        if view.suspended and self.context.logic_version >= 6:
            view.suspended = "default"  # its locks ended when it was suspended
        else:
            self.suspend(peer, "default", now, out)
        self.context.count("defaults_declared")
        notice = DefaultNotice(peer, claimed, loss)
        for other in self.peers:
            if other != peer:
                self.context.send(other, notice, now, out)

    def suspend(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        """No new locks for ``peer`` and none taken from it; its open locks end."""
        view = self.peers[peer]
        if view.suspended:
            return
        view.suspended = reason
        assert self.holder is not None
        self.holder.end_locks_of(peer, "suspended", now, out)

    def reinstate(self, peer: NodeId, now: Now) -> None:
        """The operator trades with ``peer`` again: reverse every open default
        claim and loss on it, and give its unsettled trades a fresh deadline
        (they settle as usual from the next cycle)."""
        context = self.context
        view = self.peers.get(peer)
        if view is None or not view.suspended:
            context.count("reinstate_not_suspended")
            return
        ledger = context.ledger
        asset = AssetCode(context.config.clearing.bond_asset)
        owner = AccountKey(peer_owner(peer), asset)
        for record in view.open_defaults:
            if record.claimed:
                collateral = AccountKey(collateral_owner(peer), asset)
                ledger.post(
                    Entry(
                        EntryId(f"unclaim:{peer}:{record.number}"),
                        (Posting(owner, -record.claimed), Posting(collateral, record.claimed)),
                    )
                )
            if record.loss:
                losses = AccountKey(LOSSES_OWNER, asset)
                ledger.post(
                    Entry(
                        EntryId(f"unloss:{peer}:{record.number}"),
                        (Posting(owner, -record.loss), Posting(losses, record.loss)),
                    )
                )
        view.open_defaults.clear()
        view.suspended = ""
        view.witnesses.clear()
        for lock_id in view.unsettled_at:
            view.unsettled_at[lock_id] = now.mono_ms
        context.count("peers_reinstated")

    def on_default_notice(
        self, sender: NodeId, message: DefaultNotice, now: Now, out: list[Effect]
    ) -> None:
        context = self.context
        context.count("default_notices")
        defaulter = message.defaulter
        if defaulter == context.node_id:
            self.peers[sender].declared_us += 1
            context.count("declared_in_default")
            return
        view = self.peers.get(defaulter)
        if view is None or defaulter == sender:
            return
        view.witnesses[sender] = None
        quorum = context.config.clearing.default_notice_quorum
        if quorum and len(view.witnesses) >= quorum:
            self.suspend(defaulter, "notices", now, out)

    def violation(
        self,
        peer: NodeId,
        reason: str,
        messages: tuple[Message, ...],
        now: Now,
        out: list[Effect],
    ) -> None:
        """``peer`` broke the protocol in a way its signed messages prove: keep
        the record, hand the messages to the store, and trade no more with it
        until the operator reinstates it."""
        context = self.context
        view = self.peers[peer]
        view.violations.append((reason, now.mono_ms))
        while len(view.violations) > context.config.max_violations_kept:
            view.violations.popleft()
        context.count(f"violations:{reason}")
        out.append(Violation(peer, reason, messages))
        self.suspend(peer, "violation", now, out)

    # ============================================================= timers

    def next_timer_ms(self) -> int | None:
        peers = self.peers
        times = [peers[p].bond_resend_mono_ms for p in self._bonding]
        if self._trading and self._next_settlement_mono_ms is not None:
            times.append(self._next_settlement_mono_ms)
        for peer in self._trading:
            view = peers[peer]
            if view.proposal is not None and self._settles(view):
                times.append(view.proposal_resend_mono_ms)
        return min(times) if times else None

    def restart(self, delta_ms: int, now: Now) -> None:
        """Move every time kept onto the new monotonic clock: the time the
        node was down counts against no peer."""
        for view in self.peers.values():
            view.bond_resend_mono_ms = now.mono_ms
            view.proposal_resend_mono_ms = now.mono_ms
            for lock_id in view.unsettled_at:
                view.unsettled_at[lock_id] += delta_ms
            if view.broadcasts is not None:
                view.broadcasts.rebase(delta_ms)
            if view.ratio is not None:
                view.ratio.rebase(delta_ms)
        self._next_settlement_mono_ms = None

    # ============================================================ snapshot

    def snapshot(self) -> LiabilityState:
        return LiabilityState(
            tuple(self._peer_state(peer, view) for peer, view in self.peers.items()),
            self._next_settlement_mono_ms,
        )

    @staticmethod
    def _peer_state(peer: NodeId, v: PeerClearing) -> PeerClearingState:
        return PeerClearingState(
            peer,
            v.bond_posted,
            v.next_bond_id,
            v.outgoing,
            v.outgoing_paid,
            tuple(v.queued),
            v.bond_resend_mono_ms,
            v.bond_held,
            v.last_bond_id,
            v.last_answer,
            v.claim,
            tuple((bond_id, asset, amount) for bond_id, (asset, amount) in v.receipts.items()),
            v.received,
            v.returned,
            None if v.broadcasts is None else v.broadcasts.state(),
            None if v.ratio is None else v.ratio.state(),
            v.cycle,
            v.proposal,
            v.proposal_resend_mono_ms,
            v.last_statement_answer,
            v.settled,
            tuple((k, d, v.unsettled_at[k]) for k, d in v.unsettled.items()),
            v.suspended,
            v.defaults,
            tuple(v.open_defaults),
            tuple(v.witnesses),
            v.declared_us,
            tuple(v.violations),
        )

    def restore(self, state: LiabilityState) -> None:
        self.peers = {}
        for s in state.peers:
            self.peers[s.peer] = PeerClearing(
                bond_posted=s.bond_posted,
                next_bond_id=s.next_bond_id,
                outgoing=s.outgoing,
                outgoing_paid=s.outgoing_paid,
                queued=list(s.queued),
                bond_resend_mono_ms=s.bond_resend_mono_ms,
                bond_held=s.bond_held,
                last_bond_id=s.last_bond_id,
                last_answer=s.last_answer,
                claim=s.claim,
                receipts={b: (asset, amount) for b, asset, amount in s.receipts},
                received=s.received,
                returned=s.returned,
                broadcasts=None if s.broadcasts is None else TokenBucket.from_state(s.broadcasts),
                ratio=None if s.ratio is None else AcceptanceRatio.from_state(s.ratio),
                cycle=s.cycle,
                proposal=s.proposal,
                proposal_resend_mono_ms=s.proposal_resend_mono_ms,
                last_statement_answer=s.last_statement_answer,
                settled=s.settled,
                unsettled={k: d for k, d, _ in s.unsettled},
                unsettled_at={k: t for k, _, t in s.unsettled},
                suspended=s.suspended,
                defaults=s.defaults,
                open_defaults=list(s.open_defaults),
                witnesses=dict.fromkeys(s.witnesses),
                declared_us=s.declared_us,
                violations=deque(s.violations),
            )
        self._next_settlement_mono_ms = state.next_settlement_mono_ms
        self._bonding = {p for p, v in self.peers.items() if v.outgoing is not None}
        self._trading = {p for p, v in self.peers.items() if v.unsettled}
