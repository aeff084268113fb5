"""An operator's movement of money under a reference is made once: a
deposit, a withdrawal, funding and a bond request retried after a lost
answer, or sent twice at once, move the money one time; a reference used
for other terms is refused; a refused request keeps nothing; and the
reference holds across a restart of the node. In process, on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from test_admin_peers import PEER, Harness, add, fund, node_with_admin_api, refused, serve

from datn.domain import USD
from datn.ledger import AccountKey
from datn.protocol.effects import BondInput, DepositInput, FundInput, WithdrawInput
from datn.protocol.liability import CAPITAL_OWNER
from datn.protocol.messages import BondRequest
from datn.protocol.venue import trader_owner


async def trader(h: Harness, trader_id: str = "t1") -> None:
    made = await h.http.post("/admin/traders", json={"trader_id": trader_id})
    assert made.status_code == 201, made.text


async def balance(h: Harness, owner: str) -> int:
    key = AccountKey(owner, USD.code)
    return await h.runtime.read(lambda core: core.context.ledger.balance(key))


async def all_at_once(h: Harness, path: str, body: dict[str, object], n: int) -> list[int]:
    answers: list[httpx.Response] = await asyncio.gather(
        *(h.http.post(path, json=body) for _ in range(n))
    )
    for answer in answers:
        assert answer.json().get("reference") == body["reference"], answer.text
    return sorted(answer.status_code for answer in answers)


def test_a_deposit_retried_or_sent_at_once_is_made_once(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await trader(h)
        body = {"trader_id": "t1", "asset": "USD", "amount": 500, "reference": "wire-0001"}
        first = await h.http.post("/admin/deposits", json=body)
        assert first.status_code == 201, first.text
        again = await h.http.post("/admin/deposits", json=body)
        assert again.status_code == 200 and again.json() == first.json()
        assert await balance(h, trader_owner("t1")) == 500
        # Six at once under a new reference: one is made, five wait and are
        # answered as it was.
        burst = {**body, "reference": "wire-0002"}
        assert await all_at_once(h, "/admin/deposits", burst, 6) == [200] * 5 + [201]
        assert await balance(h, trader_owner("t1")) == 1_000
        # Without a reference each request is a deposit, as before.
        plain = {"trader_id": "t1", "asset": "USD", "amount": 1}
        for _ in range(2):
            answer = await h.http.post("/admin/deposits", json=plain)
            assert answer.status_code == 201 and "reference" not in answer.json()
        assert await balance(h, trader_owner("t1")) == 1_002
        deposits = [e for e in h.journaled() if isinstance(e, DepositInput)]
        assert [d.amount for d in deposits] == [500, 500, 1, 1]

    serve(tmp_path, scenario)


def test_a_reference_used_for_other_terms_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await trader(h)
        await trader(h, "t2")
        body = {"trader_id": "t1", "asset": "USD", "amount": 500, "reference": "r-1"}
        assert (await h.http.post("/admin/deposits", json=body)).status_code == 201
        before = await h.state_hash()
        for other in (
            {**body, "amount": 501},
            {**body, "trader_id": "t2"},
            {"asset": "USD", "amount": 500, "reference": "r-1"},  # a funding, not a deposit
        ):
            path = "/admin/fund" if "trader_id" not in other else "/admin/deposits"
            answer = refused(await h.http.post(path, json=other), 422, "reference_reused")
            assert "r-1" in answer["message"] and "500" in answer["message"]
        withdrawal = refused(
            await h.http.post("/admin/withdrawals", json=body), 422, "reference_reused"
        )
        assert "deposit" in withdrawal["message"]
        assert await h.state_hash() == before
        for bad in ("", "a" * 65, "has space", "-leading-dash", "é", 7):
            bad_body = {**body, "reference": bad}
            refused(await h.http.post("/admin/deposits", json=bad_body), 400, "bad_request")
        assert await h.state_hash() == before

    serve(tmp_path, scenario)


def test_a_refused_request_keeps_nothing_and_may_be_sent_again(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        body = {"trader_id": "t1", "asset": "USD", "amount": 300, "reference": "late-1"}
        # The trader has no key yet: refused, and the reference is not kept.
        refused(await h.http.post("/admin/deposits", json=body), 404, "unknown_trader")
        await trader(h)
        # Nothing to withdraw yet: refused, and the reference stays free.
        take = {**body, "reference": "payout-1", "amount": 200}
        refused(await h.http.post("/admin/withdrawals", json=take), 422, "beyond_available")
        assert (await h.http.post("/admin/deposits", json=body)).status_code == 201
        first = await h.http.post("/admin/withdrawals", json=take)
        assert first.status_code == 201, first.text
        # A retry of the payout is answered as it was, though what is
        # available now (100) is less than it asks: it is not paid again.
        again = await h.http.post("/admin/withdrawals", json=take)
        assert again.status_code == 200 and again.json() == first.json()
        assert await balance(h, trader_owner("t1")) == 100
        withdrawals = [e for e in h.journaled() if isinstance(e, WithdrawInput)]
        assert [w.amount for w in withdrawals] == [200]

    serve(tmp_path, scenario)


def test_funding_and_a_bond_request_are_made_once(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        body = {"asset": "USD", "amount": 10_000, "reference": "capital-1"}
        assert await all_at_once(h, "/admin/fund", body, 3) == [200, 200, 201]
        assert await balance(h, CAPITAL_OWNER) == 10_000
        await add(h, PEER)
        post = {"peer": PEER, "amount": 4_000, "reference": "bond-1"}
        first = await h.http.post("/admin/bonds", json=post)
        assert first.status_code == 201, first.text
        assert first.json()["bond_id"] == 1 and first.json()["status"] == "sent"
        again = await h.http.post("/admin/bonds", json=post)
        assert again.status_code == 200, again.text
        assert {k: again.json()[k] for k in ("bond_id", "status", "amount", "reference")} == {
            "bond_id": 1,
            "status": "sent",
            "amount": 4_000,
            "reference": "bond-1",
        }
        # Asking it back under the same reference is another request.
        back = {**post, "amount": 1_000}
        refused(await h.http.post("/admin/bonds/withdrawals", json=back), 422, "reference_reused")
        requests = [s.message for s in h.sent if type(s.message) is BondRequest]
        assert [(r.bond_id, r.amount) for r in requests] == [(1, 4_000)]
        bonds = [e for e in h.journaled() if isinstance(e, BondInput)]
        assert bonds == [BondInput(PEER, 4_000, False)]
        assert [e.amount for e in h.journaled() if isinstance(e, FundInput)] == [10_000]

    serve(tmp_path, scenario)


def test_a_reference_holds_across_a_restart(tmp_path: Path) -> None:
    body = {"trader_id": "t1", "asset": "USD", "amount": 700, "reference": "wire-9"}

    async def main() -> None:
        async with node_with_admin_api(tmp_path) as h:
            await trader(h)
            await fund(h, 5)
            assert (await h.http.post("/admin/deposits", json=body)).status_code == 201
        async with node_with_admin_api(tmp_path) as h:
            again = await h.http.post("/admin/deposits", json=body)
            assert again.status_code == 200, again.text
            assert await balance(h, trader_owner("t1")) == 700
            other = {**body, "amount": 701}
            refused(await h.http.post("/admin/deposits", json=other), 422, "reference_reused")

    asyncio.run(asyncio.wait_for(main(), timeout=30))
