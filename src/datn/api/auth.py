"""Who is calling: signed requests for traders, a bearer token for the operator.

A trader signs each request with one of its keys: three headers,

* ``DATN-KEY``: the key id the operator gave it,
* ``DATN-TIMESTAMP``: the request's time, milliseconds since the epoch,
* ``DATN-SIGNATURE``: the hex signature of
  ``timestamp + "\\n" + METHOD + "\\n" + path?query + "\\n"`` followed by the
  raw body bytes (:func:`signing_payload`), where ``path?query`` is exactly
  what the request line carries, percent escapes and all.

Two kinds of key sign it:

* **Ed25519** (the default): the trader keeps its private key; the node
  keeps only the public key, so a signature is proof the trader sent the
  request. The node keeps each signed order as evidence
  (:class:`SignedRequest`), which anyone with the public key can check.
* **HMAC-SHA256** with a shared secret, for tools that only do HMAC (as the
  large exchanges' APIs do). The node holds the secret too, so these
  signatures authenticate but prove nothing to a third party.

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
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from datn.store import Credential, Store
from datn.wire.keys import is_public_key

KEY_HEADER: Final = "datn-key"
TIMESTAMP_HEADER: Final = "datn-timestamp"
SIGNATURE_HEADER: Final = "datn-signature"
MAX_WINDOW_MS: Final = 60_000


_MILLISECONDS: Final = re.compile(r"[0-9]{1,16}")
_HMAC_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
_ED25519_SIGNATURE: Final = re.compile(r"[0-9a-f]{128}")
_KEY_ID: Final = re.compile(r"[!-~]{1,64}")
"""What a key id can be (printable ASCII): anything else is no key, and is
never looked up in the store."""


def valid_key_id(key_id: str) -> bool:
    """Whether ``key_id`` can be a key's id (what the node never stores
    need not be looked for)."""
    return _KEY_ID.fullmatch(key_id) is not None


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


def sign_ed25519(key: SigningKey, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The hex Ed25519 signature a client sends (for clients and tests)."""
    return key.sign(signing_payload(timestamp, method, target, body)).signature.hex()


def new_hmac_key(trader_id: str, now_ms: int) -> tuple[Credential, bytes]:
    """A fresh key for ``trader_id``: the credential to store and its secret."""
    secret = secrets.token_bytes(32)
    return Credential(new_key_id(), trader_id, "hmac", secret, now_ms), secret


def ed25519_key(trader_id: str, public_key: bytes, now_ms: int) -> Credential:
    """The credential of a trader's Ed25519 public key (32 bytes)."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    VerifyKey(public_key)
    if not is_public_key(public_key):
        raise ValueError("not an Ed25519 public key (not a point of the curve's group)")
    return Credential(new_key_id(), trader_id, "ed25519", public_key, now_ms)


def new_key_id() -> str:
    return "k_" + secrets.token_hex(12)


class SignedRequest(msgspec.Struct, frozen=True, array_like=True):
    """A request exactly as the trader signed it: kept as evidence that the
    trader sent it (for Ed25519 keys, whose private half only the trader has)."""

    key_id: str
    public_key: bytes
    timestamp: str
    method: str
    target: str
    body: bytes
    signature: bytes

    def check(self) -> bool:
        """Whether the signature is the public key's over the request."""
        payload = signing_payload(self.timestamp, self.method, self.target, self.body)
        try:
            VerifyKey(self.public_key).verify(payload, self.signature)
        except (BadSignatureError, ValueError):
            return False
        return True


_SIGNED = msgspec.msgpack.Encoder()
_SIGNED_DECODER = msgspec.msgpack.Decoder(SignedRequest)


def encode_signed(request: SignedRequest) -> bytes:
    return _SIGNED.encode(request)


def decode_signed(data: bytes) -> SignedRequest:
    return _SIGNED_DECODER.decode(data)


@dataclass(frozen=True, slots=True)
class Caller:
    trader_id: str
    key_id: str
    signed: SignedRequest | None = None
    """The request as signed, when the key is Ed25519 (evidence)."""


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
        self._verify_keys: dict[str, VerifyKey] = {}
        self._unknown: OrderedDict[str, None] = OrderedDict()
        """Key ids the store did not have, the latest 10,000: a caller
        sending made-up key ids costs the store nothing after the first."""

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
        if _MILLISECONDS.fullmatch(stamp) is None:
            raise AuthError("bad_timestamp", f"{TIMESTAMP_HEADER} is milliseconds since the epoch")
        if abs(now - int(stamp)) > self.window_ms:
            raise AuthError(
                "stale_timestamp",
                f"the request's time is more than {self.window_ms} ms from the node's clock",
            )
        credential = self._credential(key_id)
        if credential is None or credential.revoked:
            raise AuthError("unknown_key", "the key is unknown or revoked")
        # A signature is hex, read without regard to case: its lower-case
        # form is the one a replay is recognised by, however it is spelt.
        signature = signature.lower()
        signed = None
        if credential.kind == "ed25519":
            signed = self._check_ed25519(credential, stamp, method, target, body, signature)
        else:
            expected = sign(credential.material, stamp, method, target, body)
            if _HMAC_SIGNATURE.fullmatch(signature) is None or not hmac.compare_digest(
                expected, signature
            ):
                raise AuthError("bad_signature", "the signature does not match the request")
        if once is None:
            once = method.upper() not in ("GET", "HEAD")
        if once:
            self._forget(now)
            if signature in self._seen:
                raise AuthError("replayed", "this signed request was received already")
            self._seen[signature] = int(stamp)
        return Caller(credential.trader_id, key_id, signed)

    def _check_ed25519(
        self,
        credential: Credential,
        stamp: str,
        method: str,
        target: str,
        body: bytes,
        signature: str,
    ) -> SignedRequest:
        if _ED25519_SIGNATURE.fullmatch(signature) is None:
            raise AuthError("bad_signature", "an Ed25519 signature is 64 bytes, in hex")
        raw = bytes.fromhex(signature)
        verifier = self._verify_keys.get(credential.key_id)
        if verifier is None:
            verifier = self._verify_keys[credential.key_id] = VerifyKey(credential.material)
        payload = signing_payload(stamp, method, target, body)
        try:
            verifier.verify(payload, raw)
        except BadSignatureError:
            raise AuthError("bad_signature", "the signature does not match the request") from None
        return SignedRequest(
            credential.key_id, credential.material, stamp, method.upper(), target, body, raw
        )

    def active(self, key_id: str) -> bool:
        """Whether ``key_id`` is a key the node holds and has not revoked:
        asked again by a session the key opened, at each request."""
        credential = self._credential(key_id)
        return credential is not None and not credential.revoked

    def revoked(self, key_id: str) -> None:
        self._keys.pop(key_id, None)
        self._verify_keys.pop(key_id, None)

    def added(self, key_id: str) -> None:
        """A key was just stored: forget that it was once unknown."""
        self._unknown.pop(key_id, None)

    def _credential(self, key_id: str) -> Credential | None:
        found = self._keys.get(key_id)
        if found is None:
            if key_id in self._unknown or not valid_key_id(key_id):
                return None
            found = self.store.credential(key_id)
            if found is None:
                self._unknown[key_id] = None
                if len(self._unknown) > 10_000:
                    self._unknown.popitem(last=False)
            elif not found.revoked:
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
