"""The order lane: ``POST /v1/orders`` answered without the framework's
per-request work.

Placing an order over HTTP is the one request traders send at a rate. Under
HTTP order entry, Litestar's own work for each request (routing, resolving
the caller as a dependency, extracting and validating the body, building the
response, the middleware's send wrappers) took more of the node's loop than
placing the order did. :class:`OrderLane` sits in front of the traders' app
and answers a place whose body it can read at once: it reads the body, checks
the signature and the trader's rate (:func:`~datn.api.app.authenticate`),
places the order (:func:`~datn.api.app.place`, the framework's route's own
code), and writes the answer, or the refusal the framework's route would have
written (:func:`~datn.api.app.refusal`). Everything else goes to the app.

The framework keeps the last word on what it alone decides: a body the lane
cannot read as an order (malformed, of the wrong types, unknown fields, larger
than the API takes) is handed to the app unread, exactly as it arrived, and
answered there. The lane decodes strictly, and the framework's own
validation accepts everything the strict decoder does, so an order the lane
takes the framework would have taken too, the same. The route stays the
documented one (the OpenAPI document is the framework's), and the tests run
the same requests through both and compare every answer.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from datn.api.app import (
    MAX_BODY_BYTES,
    Node,
    PlaceOrder,
    authenticate,
    place,
    refusal,
    request_target,
)

PATH = "/v1/orders"
MAX_PARTS = 64
"""A body that comes in more parts than this is handed to the app as it
comes, so that what the lane holds of a request stays small however its
client splits it."""

_DECODER = msgspec.json.Decoder(PlaceOrder)
_ENCODER = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")

Message = dict[str, Any]


class OrderLane:
    """An ASGI app: ``POST /v1/orders`` with a readable order answered here,
    every other request passed to ``app``."""

    def __init__(self, app: Any, node: Node) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        messages, body = await _read(scope, receive)
        data: PlaceOrder | None = None
        if body is not None:
            try:
                data = _DECODER.decode(body)
            except Exception:
                # Malformed, of the wrong types, not UTF-8, nested too deep:
                # decoding changed nothing, and the app answers it.
                data = None
        if body is None or data is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        await self._place(scope, body, data, send)

    async def _place(self, scope: Any, body: bytes, data: PlaceOrder, send: Any) -> None:
        node = self.node
        # Only the signature's headers are read (all named datn-...).
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name[:5].lower() == b"datn-"
        }
        extra: dict[str, str] = {}
        try:
            caller = authenticate(node, headers, "POST", request_target(scope), body)
            new, view = await place(node, caller.trader_id, data, caller.signed)
            status, payload = (201 if new else 200), _ENCODER.encode(view)
        except Exception as error:
            answer = refusal(error)
            status, payload, extra = answer.status, _ENCODER.encode(answer.body), answer.headers
        node.counters.responses[status] += 1
        raw = [_JSON, (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


async def _read(scope: Any, receive: Any) -> tuple[list[Message], bytes | None]:
    """The request's messages as received, and its whole body; the body is
    None when the lane leaves the request to the app: larger than the API
    takes (or a length it cannot read), in more than MAX_PARTS parts, or
    the client gone before it was whole."""
    messages: list[Message] = []
    for name, value in scope["headers"]:
        if name == b"content-length" and not (
            value.isdigit() and len(value) <= 18 and int(value) <= MAX_BODY_BYTES
        ):
            return messages, None
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES or len(messages) > MAX_PARTS:
            return messages, None
        if not message.get("more_body", False):
            break
    if len(messages) == 1:
        return messages, message.get("body", b"")
    return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Any) -> Any:
    """A receive that gives ``messages`` again, then what ``receive`` gives."""
    queued = deque(messages)

    async def replayed() -> Message:
        if queued:
            return queued.popleft()
        message: Message = await receive()
        return message

    return replayed
