"""Clearing between peers, the node core's second half (DESIGN.md section 7).

Bonds: a node posts a bond with a peer by asking it to hold one; both ledgers
book it once the peer answers. Exposure: what a peer owes, marked to the last
trade prices, plus the locks held open for it; a holder offers no lock past
the cap the peer's bond allows. Settlement: each cycle the lower id of a pair
proposes a statement of the trades both booked, and the net moves over the
rail only when the other side reproduces it. Default: a peer with a trade
unsettled past the deadline is suspended, its bond claimed first and the rest
recorded as a loss, and every other peer is told.

The rules themselves are pure functions in :mod:`datn.clearing`; this module
applies them to the node's state and ledger.
"""

from __future__ import annotations

from datn.clearing.exposure import exposure, exposure_cap, marked_value
from datn.clearing.quota import AcceptanceRatio, TokenBucket, lock_quota
from datn.clearing.settlement import build_statement, net_of, reproduce, statement_hash
from datn.domain import AssetCode, ProductSpec
from datn.ledger import EXTERNAL, UNBOUNDED, AccountKey, Entry, EntryId, HoldId, HoldUse, Posting
from datn.protocol.clock import Now
from datn.protocol.effects import BondInput, Effect, Input, SetTimer
from datn.protocol.messages import (
    BondAnswer,
    BondRequest,
    DefaultNotice,
    Message,
    NodeId,
    StatementAnswer,
    StatementProposal,
)
from datn.protocol.state import (
    LOSSES_OWNER,
    NodeState,
    PeerView,
    bond_held_owner,
    bond_posted_owner,
    collateral_owner,
    rail_owner,
)


class Liability(NodeState):
    """Bonds, exposure, settlement and default: what a node does as a peer's
    creditor and debtor. :class:`~datn.protocol.node.NodeCore` inherits it."""

    def _on_bond(self, event: Input, now: Now, out: list[Effect]) -> None:
        """Ask a peer to hold more bond, or to give some back. Posting holds
        the capital until the peer answers; both sides book only then."""
        assert isinstance(event, BondInput)
        view = self.peers.get(event.peer)
        if view is None or event.amount <= 0:
            self._count("bond_request_invalid")
            return
        asset = self.config.clearing.bond_asset
        bond_id = self._random_id("bond", len(self.journal), self._counter)
        self._counter += 1
        if event.withdraw:
            asked = sum(r.amount for r in view.bond_requests.values() if r.withdraw)
            if event.amount > view.bond_posted - asked:
                self._count("bond_withdraw_beyond_posted")
                return
        else:
            if self.ledger.available(self._capital) < event.amount:
                self._count("bond_post_without_capital")
                return
            self.ledger.place_hold(f"bond:{bond_id}", self._capital, event.amount)
        request = BondRequest(bond_id, asset, event.amount, event.withdraw)
        view.bond_requests[bond_id] = request
        self._bonds_waiting[event.peer] = None
        self._send(event.peer, request, now, out)
        view.bond_resend_mono_ms = now.mono_ms + self.config.clearing.bond_resend_ms
        out.append(SetTimer(view.bond_resend_mono_ms))

    # ================================================================ bonds

    def _on_bond_request(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As holder of a peer's bond: book a posting or a withdrawal once,
        and give the same answer to every retry."""
        assert isinstance(message, BondRequest)
        view = self.peers[sender]
        answer = view.bond_answers.get(message.bond_id)
        if answer is None:
            reason = self._hold_bond(sender, view, message)
            answer = BondAnswer(message.bond_id, reason)
            view.bond_answers[message.bond_id] = answer
            self._count("bond_requests_done" if not reason else f"bond_refused:{reason}")
        self._send(sender, answer, now, out)

    def _hold_bond(self, peer: NodeId, view: PeerView, request: BondRequest) -> str:
        asset = self.config.clearing.bond_asset
        if request.asset != asset:
            return "wrong_asset"
        if request.amount <= 0:
            return "bad_amount"
        amount = request.amount
        if request.withdraw:
            if amount > view.bond_held:
                return "beyond_bond"
            if view.lock_count:
                return "locks_open"
            if self._marked(peer) < 0:
                return "owing"
            amount = -amount
        accounts = view.accounts
        if accounts.bond_held is None or accounts.collateral is None:
            accounts.bond_held = self.ledger.open_account(bond_held_owner(peer), asset, UNBOUNDED)
            accounts.collateral = self.ledger.open_account(collateral_owner(peer), asset)
        entry = Entry(
            EntryId(f"bond-held:{peer}:{request.bond_id}"),
            (Posting(accounts.bond_held, -amount), Posting(accounts.collateral, amount)),
        )
        self.ledger.post(entry)
        view.bond_held += amount
        return ""

    def _on_bond_answer(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As poster: the peer has booked (or refused) a bond request; book
        this side of it, once."""
        assert isinstance(message, BondAnswer)
        view = self.peers[sender]
        request = view.bond_requests.pop(message.bond_id, None)
        if request is None:
            return  # a repeated answer
        if not view.bond_requests:
            self._bonds_waiting.pop(sender, None)
        hold = None if request.withdraw else f"bond:{request.bond_id}"
        if message.reason:
            if hold is not None:
                self.ledger.release_hold(hold)
            self._count(f"bond_refused_by_peer:{message.reason}")
            return
        accounts = view.accounts
        if accounts.bond_posted is None:
            accounts.bond_posted = self.ledger.open_account(
                bond_posted_owner(sender), request.asset
            )
        amount = -request.amount if request.withdraw else request.amount
        entry = Entry(
            EntryId(f"bond-posted:{sender}:{request.bond_id}"),
            (Posting(self._capital, -amount), Posting(accounts.bond_posted, amount)),
            () if hold is None else (HoldUse(HoldId(hold), request.amount),),
        )
        self.ledger.post(entry)
        view.bond_posted += amount

    # ============================================================= exposure

    def _marked(self, peer: NodeId) -> int:
        """The peer's accounts here, marked to the last trade prices, in the
        bond asset: positive, this node owes the peer; negative, it is owed."""
        keys = self.peers[peer].accounts.peer
        if keys is None:
            return 0
        balance = self.ledger.balance
        balances = {asset: balance(key) for asset, key in keys.items()}
        return marked_value(
            balances, self.products, self.reference_prices, self.config.clearing.bond_asset
        )

    def _lock_budget(self, originator: NodeId, now: Now) -> tuple[int, int, str]:
        """How much notional, and how many locks, this node may still offer
        ``originator``: the lesser of its lock quota and its exposure room;
        with the limit that binds (the reason, if that is nothing)."""
        view = self.peers[originator]
        clearing = self.config.clearing
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
        room = cap - exposure(self._marked(originator), view.lock_notional)
        quota_left = quota.max_lock_notional - view.lock_notional
        binding = "exposure_cap" if room < quota_left else "lock_quota"
        notional = min(quota_left, room)
        count = quota.max_locks - view.lock_count
        if notional <= 0 or count <= 0:
            return 0, 0, binding if notional <= 0 else "lock_quota"
        return notional, count, binding

    def _ratio(self, view: PeerView, now: Now) -> AcceptanceRatio:
        if view.ratio is None:
            view.ratio = AcceptanceRatio(self.config.clearing.quota.ratio_half_life_ms, now.mono_ms)
        return view.ratio

    # ============================================================ settlement

    def _unsettled_trade(
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
        self.unsettled.setdefault(peer, {})[lock_id] = deltas
        self._unsettled_at.setdefault(peer, {})[lock_id] = now.mono_ms

    def _settlement_cycle(self, now: Now, out: list[Effect]) -> None:
        """As the lower id of a pair: propose the statement of every trade not
        settled yet; resend one still unanswered."""
        clearing = self.config.clearing
        due = self._next_settlement_mono_ms
        if due is None or now.mono_ms >= due:
            due = now.mono_ms + clearing.settlement_cycle_ms
            ripe = now.mono_ms - clearing.settlement_lag_ms
            overdue = now.mono_ms - clearing.settlement_deadline_ms
            for peer in list(self.unsettled):
                booked = self._unsettled_at[peer]
                if min(booked.values()) <= overdue:
                    self._declare_default(peer, now, out)
                    continue
                view = self.peers[peer]
                if self.node_id < peer and view.proposal is None:
                    trades = {k: v for k, v in self.unsettled[peer].items() if booked[k] <= ripe}
                    if trades:
                        statement = build_statement(self.node_id, peer, view.cycle + 1, trades)
                        view.proposal = StatementProposal(statement)
                        view.proposal_resend_mono_ms = now.mono_ms
            self._next_settlement_mono_ms = due
            out.append(SetTimer(due))
        for peer in self.unsettled:
            view = self.peers[peer]
            if view.proposal is not None and now.mono_ms >= view.proposal_resend_mono_ms:
                self._send(peer, view.proposal, now, out)
                view.proposal_resend_mono_ms = now.mono_ms + clearing.bond_resend_ms
                out.append(SetTimer(view.proposal_resend_mono_ms))

    def _on_statement_proposal(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As the higher id: settle the proposed statement if this node's own
        records give the same one; answer each cycle once, the same way on
        every retry."""
        assert isinstance(message, StatementProposal)
        view = self.peers[sender]
        statement = message.statement
        answer = view.statement_answers.get(statement.cycle)
        if answer is None:
            mine, reason = reproduce(statement, self.node_id, self.unsettled.get(sender, {}))
            if not reason and (statement.low != sender or statement.cycle <= view.cycle):
                mine, reason = None, "out_of_turn"
            if mine is not None and not reason:
                self._settle(sender, statement.cycle, statement.lock_ids)
                view.cycle = statement.cycle
            else:
                self._count(f"statements_refused:{reason}")
            answer = StatementAnswer(statement.cycle, statement_hash(mine or statement), reason)
            view.statement_answers[statement.cycle] = answer
        self._send(sender, answer, now, out)

    def _on_statement_answer(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        """As the lower id: the peer settled (or refused) the proposal."""
        assert isinstance(message, StatementAnswer)
        view = self.peers[sender]
        proposal = view.proposal
        if proposal is None or proposal.statement.cycle != message.cycle:
            return  # a repeated answer
        view.proposal = None
        view.cycle = max(view.cycle, message.cycle)
        statement = proposal.statement
        if message.reason or message.statement_hash != statement_hash(statement):
            # Flagged, nothing moves; the trades stay open for the next cycle.
            self._count(f"statements_mismatched:{message.reason or 'hash'}")
            return
        self._settle(sender, statement.cycle, statement.lock_ids)

    def _settle(self, peer: NodeId, cycle: int, lock_ids: tuple[int, ...]) -> None:
        """Move the net of ``lock_ids`` over the built-in rail: out of the
        peer's accounts here, into the rail account that mirrors the peer's."""
        trades, booked = self.unsettled[peer], self._unsettled_at[peer]
        for lock_id in lock_ids:
            del booked[lock_id]
        net = net_of(trades.pop(lock_id) for lock_id in lock_ids)
        if not trades:
            del self.unsettled[peer], self._unsettled_at[peer]
        keys = self._peer_keys(peer)
        rails = self.peers[peer].accounts.rail
        postings = []
        for asset, amount in net:
            rail = rails.get(asset)
            if rail is None:
                rail = rails[asset] = self.ledger.open_account(rail_owner(peer), asset, EXTERNAL)
            postings.append(Posting(keys[asset], -amount))
            postings.append(Posting(rail, amount))
        if postings:
            self.ledger.post(Entry(EntryId(f"settle:{peer}:{cycle}"), tuple(postings)))
        self.peers[peer].settled += 1
        self._count("statements_settled")

    def _declare_default(self, peer: NodeId, now: Now, out: list[Effect]) -> None:
        """``peer`` did not settle by the deadline: suspend it, close out what
        it owes against its bond, record the rest as this node's loss, and
        tell every other peer."""
        view = self.peers[peer]
        asset = AssetCode(self.config.clearing.bond_asset)
        shortfall = max(0, -self._marked(peer))
        collateral = AccountKey(collateral_owner(peer), asset)
        claimed = min(shortfall, self.ledger.balance(collateral))
        loss = shortfall - claimed
        owner = self._peer_account(peer)
        if claimed:
            self.ledger.post(
                Entry(
                    EntryId(f"claim:{peer}"),
                    (Posting(collateral, -claimed), Posting(AccountKey(owner, asset), claimed)),
                )
            )
        if loss:
            self.ledger.open_account(LOSSES_OWNER, asset, UNBOUNDED)
            self.ledger.post(
                Entry(
                    EntryId(f"loss:{peer}"),
                    (
                        Posting(AccountKey(LOSSES_OWNER, asset), -loss),
                        Posting(AccountKey(owner, asset), loss),
                    ),
                )
            )
        self.unsettled.pop(peer, None)
        self._unsettled_at.pop(peer, None)
        view.proposal = None
        self._suspend(peer, "default", now, out)
        self._count("defaults_declared")
        notice = DefaultNotice(peer, claimed, loss)
        for other in self.peers:
            if other != peer:
                self._send(other, notice, now, out)

    def _suspend(self, peer: NodeId, reason: str, now: Now, out: list[Effect]) -> None:
        """No new locks for ``peer`` and none taken from it; its open locks end."""
        view = self.peers[peer]
        if view.suspended:
            return
        view.suspended = reason
        self._end_locks_of(peer, "suspended", now, out)

    def _on_default_notice(
        self, sender: NodeId, message: Message, now: Now, out: list[Effect]
    ) -> None:
        assert isinstance(message, DefaultNotice)
        self._count("default_notices")
        defaulter = message.defaulter
        if defaulter not in self.peers or defaulter == sender:
            return
        witnesses = self._default_notices.setdefault(defaulter, {})
        witnesses[sender] = None
        quorum = self.config.clearing.default_notice_quorum
        if quorum and len(witnesses) >= quorum:
            self._suspend(defaulter, "notices", now, out)

    def settling(self) -> bool:
        """True while a proposed statement waits for its answer."""
        return any(self.peers[peer].proposal is not None for peer in self.unsettled)
