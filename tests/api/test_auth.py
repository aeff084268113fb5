"""Request signing: Ed25519 keys (the node keeps only the public half, and a
signed order is evidence anyone can check) and HMAC keys, each refused when
the signature, the key, the time or a replay is wrong."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from datn.api.auth import (
    AuthError,
    Verifier,
    decode_signed,
    ed25519_key,
    encode_signed,
    new_hmac_key,
    sign,
    sign_ed25519,
)
from datn.store import Credential
from datn.store.memory import MemoryStore

NOW = 1_700_000_000_000
BODY = b'{"client_order_id":"c1","product":"XYZ","side":"buy","quantity_lots":1}'


def headers(key_id: str, stamp: int, signature: str) -> dict[str, str]:
    return {"datn-key": key_id, "datn-timestamp": str(stamp), "datn-signature": signature}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_an_ed25519_signed_request_is_attributed_and_kept_as_checkable_evidence(
    store: MemoryStore,
) -> None:
    private = SigningKey.generate()
    credential = ed25519_key("alice", private.verify_key.encode(), NOW)
    store.put_credential(credential)
    assert store.credential(credential.key_id).material == private.verify_key.encode()  # type: ignore[union-attr]
    verifier = Verifier(store)
    signature = sign_ed25519(private, str(NOW), "POST", "/v1/orders", BODY)
    caller = verifier.verify(
        headers(credential.key_id, NOW, signature), "POST", "/v1/orders", BODY, NOW
    )
    assert (caller.trader_id, caller.key_id) == ("alice", credential.key_id)
    assert caller.signed is not None
    evidence = decode_signed(encode_signed(caller.signed))
    assert evidence == caller.signed and evidence.check()
    assert (evidence.method, evidence.target, evidence.body) == ("POST", "/v1/orders", BODY)
    # Anyone with the public key can tell a changed request from the signed one.
    assert not type(evidence)(
        evidence.key_id,
        evidence.public_key,
        evidence.timestamp,
        evidence.method,
        evidence.target,
        BODY.replace(b'"buy"', b'"sell"'),
        evidence.signature,
    ).check()


def test_an_ed25519_signature_over_other_bytes_or_by_another_key_is_refused(
    store: MemoryStore,
) -> None:
    private = SigningKey.generate()
    credential = ed25519_key("alice", private.verify_key.encode(), NOW)
    store.put_credential(credential)
    verifier = Verifier(store)
    other = SigningKey.generate()
    cases = {
        "another key": sign_ed25519(other, str(NOW), "POST", "/v1/orders", BODY),
        "another body": sign_ed25519(private, str(NOW), "POST", "/v1/orders", BODY + b" "),
        "another path": sign_ed25519(private, str(NOW), "POST", "/v1/order", BODY),
        "another time": sign_ed25519(private, str(NOW - 1), "POST", "/v1/orders", BODY),
        "not hex": "zz" * 64,
        "too short": "00" * 63,
    }
    for case, signature in cases.items():
        with pytest.raises(AuthError) as refused:
            verifier.verify(
                headers(credential.key_id, NOW, signature), "POST", "/v1/orders", BODY, NOW
            )
        assert refused.value.code == "bad_signature", case


def test_a_replayed_stale_or_revoked_signed_request_is_refused(store: MemoryStore) -> None:
    private = SigningKey.generate()
    credential = ed25519_key("alice", private.verify_key.encode(), NOW)
    store.put_credential(credential)
    verifier = Verifier(store, window_ms=5_000)

    def signed(stamp: int) -> dict[str, str]:
        return headers(
            credential.key_id,
            stamp,
            sign_ed25519(private, str(stamp), "POST", "/v1/orders", BODY),
        )

    verifier.verify(signed(NOW), "POST", "/v1/orders", BODY, NOW)
    with pytest.raises(AuthError, match="received already"):
        verifier.verify(signed(NOW), "POST", "/v1/orders", BODY, NOW + 10)
    with pytest.raises(AuthError) as stale:
        verifier.verify(signed(NOW - 5_001), "POST", "/v1/orders", BODY, NOW)
    assert stale.value.code == "stale_timestamp"
    store.revoke_credential(credential.key_id)
    verifier.revoked(credential.key_id)
    with pytest.raises(AuthError) as revoked:
        verifier.verify(signed(NOW + 1), "POST", "/v1/orders", BODY, NOW)
    assert revoked.value.code == "unknown_key"


def test_hmac_keys_still_sign_and_carry_no_evidence(store: MemoryStore) -> None:
    credential, secret = new_hmac_key("bob", NOW)
    store.put_credential(credential)
    verifier = Verifier(store)
    signature = sign(secret, str(NOW), "POST", "/v1/orders", BODY)
    caller = verifier.verify(
        headers(credential.key_id, NOW, signature), "POST", "/v1/orders", BODY, NOW
    )
    assert caller.trader_id == "bob" and caller.signed is None
    with pytest.raises(AuthError) as forged:
        verifier.verify(
            headers(credential.key_id, NOW, sign(b"x" * 32, str(NOW), "GET", "/v1/orders", b"")),
            "GET",
            "/v1/orders",
            b"",
            NOW,
        )
    assert forged.value.code == "bad_signature"


def test_a_public_key_that_is_not_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519_key("alice", b"\x01" * 31, NOW)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def credential(self, key_id: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().credential(key_id)


def test_made_up_key_ids_cost_the_store_one_read_each_and_a_new_key_is_found() -> None:
    store = CountingStore()
    verifier = Verifier(store)
    for _ in range(50):
        with pytest.raises(AuthError) as unknown:
            verifier.verify(headers("k_made_up", NOW, "00"), "GET", "/v1/orders", b"", NOW)
        assert unknown.value.code == "unknown_key"
    assert store.lookups == 1
    private = SigningKey.generate()
    credential = ed25519_key("alice", private.verify_key.encode(), NOW)
    credential = type(credential)("k_made_up", "alice", "ed25519", credential.material, NOW)
    store.put_credential(credential)
    verifier.added("k_made_up")
    signature = sign_ed25519(private, str(NOW), "GET", "/v1/orders", b"")
    caller = verifier.verify(headers("k_made_up", NOW, signature), "GET", "/v1/orders", b"", NOW)
    assert caller.trader_id == "alice"


def two_keys(store: MemoryStore) -> tuple[SigningKey, Credential, Credential, bytes]:
    """alice's Ed25519 key (its private half and credential) and bob's HMAC
    key (its credential and secret), stored."""
    private = SigningKey.generate()
    ed = ed25519_key("alice", private.verify_key.encode(), NOW)
    hmac_key, secret = new_hmac_key("bob", NOW)
    store.put_credential(ed)
    store.put_credential(hmac_key)
    return private, ed, hmac_key, secret


def test_a_replay_is_refused_however_its_signature_is_spelt(store: MemoryStore) -> None:
    """A signature is hex read without regard to case: the same signature in
    upper case, or with one letter's case changed, is the same request, and
    a replay of it is refused (for HMAC and Ed25519 keys alike)."""
    private, ed, hmac_key, secret = two_keys(store)
    verifier = Verifier(store)
    for key_id, signature in (
        (ed.key_id, sign_ed25519(private, str(NOW), "DELETE", "/v1/orders", b"")),
        (hmac_key.key_id, sign(secret, str(NOW), "DELETE", "/v1/orders", b"")),
    ):
        verifier.verify(headers(key_id, NOW, signature), "DELETE", "/v1/orders", b"", NOW)
        flipped = signature.replace("a", "A", 1) if "a" in signature else signature.upper()
        for spelt in (signature.upper(), flipped, signature):
            with pytest.raises(AuthError) as replayed:
                verifier.verify(headers(key_id, NOW, spelt), "DELETE", "/v1/orders", b"", NOW + 1)
            assert replayed.value.code == "replayed", spelt


def test_odd_timestamps_signatures_and_key_ids_are_refused_with_a_code(
    store: MemoryStore,
) -> None:
    """Whatever text comes in the three headers, the answer is a refusal with
    its code: digits that are not ASCII, signatures that are not plain hex,
    key ids with control characters (never looked up in the store)."""
    private, ed, hmac_key, secret = two_keys(store)
    verifier = Verifier(store)
    good_ed = sign_ed25519(private, str(NOW), "POST", "/v1/orders", BODY)
    good_hmac = sign(secret, str(NOW), "POST", "/v1/orders", BODY)
    spaced = " ".join(good_ed[i : i + 2] for i in range(0, len(good_ed), 2))
    cases = [
        (headers(ed.key_id, NOW, good_ed) | {"datn-timestamp": "\u00b2"}, "bad_timestamp"),
        (headers(ed.key_id, NOW, good_ed) | {"datn-timestamp": "\u0661" * 3}, "bad_timestamp"),
        (headers(hmac_key.key_id, NOW, "\u00e9" * 64), "bad_signature"),
        (headers(hmac_key.key_id, NOW, good_hmac + "00"), "bad_signature"),
        (headers(ed.key_id, NOW, spaced), "bad_signature"),
        (headers(ed.key_id, NOW, "\u00e9" * 128), "bad_signature"),
        (headers("k_\x00", NOW, good_ed), "unknown_key"),
        (headers("k " + ed.key_id, NOW, good_ed), "unknown_key"),
    ]
    lookups = CountingStore()
    for header, code in cases:
        with pytest.raises(AuthError) as refused:
            verifier.verify(header, "POST", "/v1/orders", BODY, NOW)
        assert refused.value.code == code, header
    checking = Verifier(lookups)
    for key_id in ("k_\x00", "k \u00e9", "x" * 65):
        with pytest.raises(AuthError):
            checking.verify(headers(key_id, NOW, good_ed), "POST", "/v1/orders", BODY, NOW)
    assert lookups.lookups == 0
    # The good ones still pass.
    verifier.verify(headers(ed.key_id, NOW, good_ed), "POST", "/v1/orders", BODY, NOW)
    verifier.verify(headers(hmac_key.key_id, NOW, good_hmac), "POST", "/v1/orders", BODY, NOW)
