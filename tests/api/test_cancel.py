"""A cancel that has nothing to cancel is answered without being journaled."""

from __future__ import annotations

import asyncio
import time

from nacl.signing import SigningKey
from test_lane import Signer, _pair, order


def test_a_cancel_of_no_open_order_is_refused_and_journals_nothing() -> None:
    alice = Signer("alice", "key-alice", ed25519=SigningKey(b"a" * 32))
    bob = Signer("bob", "key-bob", secret=b"bob's secret")

    async def test() -> None:
        pair = await _pair([alice, bob])
        client, runtime = pair.clients[1], pair.runtimes[1]
        store = runtime.store
        stamps = [0]

        async def cancel(signer: Signer, order_id: int) -> tuple[int, dict[str, object]]:
            # Each request a new time stamp: the same cancel signed twice in
            # one millisecond is the same request, refused as a replay.
            stamps.append(max(int(time.time() * 1_000), stamps[-1] + 1))
            target = f"/v1/orders/{order_id}"
            headers = signer.headers(b"", target, method="DELETE", stamp=str(stamps[-1]))
            answer = await client.delete(target, headers=headers)
            return answer.status_code, answer.json()

        body = order("rests", "sell", 3)
        placed = await client.post("/v1/orders", content=body, headers=alice.headers(body))
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        before = store.position()
        # Never an order, someone else's order: 404, and nothing is kept.
        for signer, unknown in ((alice, order_id + 1_000), (alice, 0), (bob, order_id)):
            status, answer = await cancel(signer, unknown)
            assert (status, answer["code"]) == (404, "unknown_order"), answer
        assert store.position() == before
        # The trader's own open order is cancelled, once; a second cancel
        # finds it closed.
        status, answer = await cancel(alice, order_id)
        assert status == 200 and answer["status"] == "cancelled", answer
        after = store.position()
        assert after > before
        status, answer = await cancel(alice, order_id)
        assert (status, answer["code"]) == (404, "unknown_order"), answer
        assert store.position() == after
        for each in pair.runtimes:
            await each.close()

    asyncio.run(test())
