"""Who is calling: signed requests for traders, a bearer token for the operator.

A trader signs each request with its API key (HMAC-SHA256, as the large
exchanges' APIs do): three headers,

* ``DATN-KEY``: the key id the operator gave it,
* ``DATN-TIMESTAMP``: the request's time, milliseconds since the epoch,
* ``DATN-SIGNATURE``: hex HMAC-SHA256, under the key's secret, of
  ``timestamp + "\\n" + METHOD + "\\n" + path?query + "\\n"`` followed by the
  raw body bytes.

A request is refused (401, nothing changes) when a header is missing, the key
is unknown or revoked, the timestamp is further than the window from the
node's clock (default 5 s, at most 60 s), the signature does not match
(compared in constant time), or, for a request that changes something
(not GET or HEAD) and for a WebSocket session's start, the same signature
was seen within the window (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from datn.store import Credential, Store

KEY_HEADER: Final = "datn-key"
TIMESTAMP_HEADER: Final = "datn-timestamp"
SIGNATURE_HEADER: Final = "datn-signature"
MAX_WINDOW_MS: Final = 60_000


class AuthError(Exception):
    """The request is not authenticated; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def signing_payload(timestamp: str, method: str, target: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{target}\n".encode() + body


def sign(secret: bytes, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The signature a client sends (for clients and tests)."""
    return hmac.new(
        secret, signing_payload(timestamp, method, target, body), hashlib.sha256
    ).hexdigest()


def new_hmac_key(trader_id: str, now_ms: int) -> tuple[Credential, bytes]:
    """A fresh key for ``trader_id``: the credential to store and its secret."""
    secret = secrets.token_bytes(32)
    return Credential("k_" + secrets.token_hex(12), trader_id, "hmac", secret, now_ms), secret


@dataclass(frozen=True, slots=True)
class Caller:
    trader_id: str
    key_id: str


class Verifier:
    """Checks signed requests against the store's credentials."""

    def __init__(self, store: Store, window_ms: int = 5_000, max_remembered: int = 200_000) -> None:
        if not 0 < window_ms <= MAX_WINDOW_MS:
            raise ValueError(f"the signing window is 1 to {MAX_WINDOW_MS} ms, not {window_ms}")
        self.store = store
        self.window_ms = window_ms
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max_remembered = max_remembered
        self._keys: dict[str, Credential] = {}

    def verify(
        self,
        headers: dict[str, str],
        method: str,
        target: str,
        body: bytes,
        now_ms: int | None = None,
        *,
        once: bool | None = None,
    ) -> Caller:
        """The caller a signed request comes from. ``once``: refuse a
        signature seen within the window (a replay); by default for every
        method but GET and HEAD, whose repeats change nothing (a client may
        well read the same thing twice in a millisecond)."""
        now = int(time.time() * 1_000) if now_ms is None else now_ms
        key_id = headers.get(KEY_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not key_id or not stamp or not signature:
            raise AuthError(
                "unsigned",
                f"sign the request: headers {KEY_HEADER}, {TIMESTAMP_HEADER} and "
                f"{SIGNATURE_HEADER} are required",
            )
        if not stamp.isdigit() or len(stamp) > 16:
            raise AuthError("bad_timestamp", f"{TIMESTAMP_HEADER} is milliseconds since the epoch")
        if abs(now - int(stamp)) > self.window_ms:
            raise AuthError(
                "stale_timestamp",
                f"the request's time is more than {self.window_ms} ms from the node's clock",
            )
        credential = self._credential(key_id)
        if credential is None or credential.revoked or credential.kind != "hmac":
            raise AuthError("unknown_key", "the key is unknown or revoked")
        expected = sign(credential.material, stamp, method, target, body)
        if not hmac.compare_digest(expected, signature.lower()):
            raise AuthError("bad_signature", "the signature does not match the request")
        if once is None:
            once = method.upper() not in ("GET", "HEAD")
        if once:
            self._forget(now)
            if signature in self._seen:
                raise AuthError("replayed", "this signed request was received already")
            self._seen[signature] = int(stamp)
        return Caller(credential.trader_id, key_id)

    def revoked(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def _credential(self, key_id: str) -> Credential | None:
        found = self._keys.get(key_id)
        if found is None:
            found = self.store.credential(key_id)
            if found is not None and not found.revoked:
                self._keys[key_id] = found
        return found

    def _forget(self, now_ms: int) -> None:
        seen = self._seen
        while seen:
            signature, stamp = next(iter(seen.items()))
            if stamp >= now_ms - self.window_ms and len(seen) < self._max_remembered:
                break
            del seen[signature]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_admin(token_digest_expected: bytes, authorization: str | None) -> None:
    """The operator's bearer token, compared in constant time."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("unsigned", "the admin API needs Authorization: Bearer <admin token>")
    given = token_digest(authorization.removeprefix("Bearer ").strip())
    if not hmac.compare_digest(given, token_digest_expected):
        raise AuthError("bad_token", "the admin token does not match")
