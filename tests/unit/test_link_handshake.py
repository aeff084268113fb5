"""The control messages of a peer link (``datn.net.handshake``): an honest
handshake opens both ways, and whatever a peer sends instead, the only error
is a RemoteProtocolError with a code saying why. Every signature is bound to
its connection's challenges, both keys and (for a welcome or an ack) the
window it states, so nothing signed for one connection, one peer or one
window passes on another.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from datn.net import handshake
from datn.net.handshake import (
    ACK,
    CHALLENGE_BYTES,
    HELLO,
    LINK_VERSION,
    MAX_CONTROL_BYTES,
    PROOF,
    WELCOME,
    Ack,
    Hello,
    Proof,
    Welcome,
    Window,
)
from datn.wire import NodeKey, Purpose, RemoteProtocolError, sign_frame
from datn.wire.limits import MAX_INT64, REPLAY_WINDOW

SENDER = NodeKey(bytes([1]) * 32)
RECEIVER = NodeKey(bytes([2]) * 32)
MALLORY = NodeKey(bytes([3]) * 32)

R_CHALLENGE = bytes(range(32))
S_CHALLENGE = bytes(range(100, 132))
OTHER_CHALLENGE = bytes(range(200, 232))

KINDS: dict[int, type[Any]] = {HELLO: Hello, PROOF: Proof, WELCOME: Welcome, ACK: Ack}

challenges = st.binary(min_size=CHALLENGE_BYTES, max_size=CHALLENGE_BYTES)


@st.composite
def windows(draw: st.DrawFn) -> Window:
    """A window as a receiver's replay window can hold it: ``contiguous``,
    then some numbers above ``contiguous + 1`` within the replay window."""
    contiguous = draw(st.integers(0, MAX_INT64 - REPLAY_WINDOW))
    offsets = draw(st.sets(st.integers(2, REPLAY_WINDOW), max_size=40))
    return Window(contiguous, tuple(sorted(contiguous + o for o in offsets)))


def refused(code: str) -> Any:
    return pytest.raises(RemoteProtocolError, check=lambda e: e.code == code)


def codes(*allowed: str) -> Any:
    return pytest.raises(RemoteProtocolError, check=lambda e: e.code in allowed)


WINDOW = Window(3, (5, 9))


def open_link(window: Window = WINDOW) -> dict[str, Any]:
    """One honest handshake, step by step; what each side holds after it."""
    hello = handshake.hello(RECEIVER, R_CHALLENGE)
    their = handshake.read_hello(hello, RECEIVER.node_id)
    proof = handshake.proof(SENDER, their, S_CHALLENGE)
    sender, proved = handshake.read_proof(proof, RECEIVER, R_CHALLENGE)
    welcome = handshake.welcome(RECEIVER, proved, window)
    return {
        "hello": hello,
        "their": their,
        "proof": proof,
        "sender": sender,
        "proved": proved,
        "welcome": welcome,
        # Both sides name the connection by both challenges, the sender's first.
        "receiver_challenges": proved.challenge + R_CHALLENGE,
        "sender_challenges": S_CHALLENGE + their.challenge,
    }


# ------------------------------------------------------------ honest


def test_an_honest_handshake_opens_and_acks_read_back() -> None:
    link = open_link(Window(3, (5, 9)))
    assert link["their"] == Hello(LINK_VERSION, RECEIVER.public_key, R_CHALLENGE)
    assert link["sender"] == SENDER.node_id
    assert link["proved"].key == SENDER.public_key
    assert link["proved"].challenge == S_CHALLENGE
    window = handshake.read_welcome(link["welcome"], SENDER, RECEIVER.node_id, S_CHALLENGE)
    assert window == Window(3, (5, 9))
    assert link["receiver_challenges"] == link["sender_challenges"]
    for later in (Window(4, (5, 9)), Window(9), Window(10, (12,))):
        acked = handshake.ack(RECEIVER, SENDER.node_id, link["receiver_challenges"], later)
        assert handshake.read_ack(acked, SENDER, RECEIVER.node_id, link["sender_challenges"]) == (
            later
        )


@given(r_challenge=challenges, s_challenge=challenges, window=windows(), later=windows())
def test_honest_handshakes_open_for_any_challenges_and_windows(
    r_challenge: bytes, s_challenge: bytes, window: Window, later: Window
) -> None:
    their = handshake.read_hello(handshake.hello(RECEIVER, r_challenge), RECEIVER.node_id)
    sender, proved = handshake.read_proof(
        handshake.proof(SENDER, their, s_challenge), RECEIVER, r_challenge
    )
    assert sender == SENDER.node_id
    welcome = handshake.welcome(RECEIVER, proved, window)
    assert handshake.read_welcome(welcome, SENDER, RECEIVER.node_id, s_challenge) == window
    acked = handshake.ack(RECEIVER, sender, proved.challenge + r_challenge, later)
    assert handshake.read_ack(acked, SENDER, RECEIVER.node_id, s_challenge + r_challenge) == later


def test_the_largest_window_a_receiver_can_hold_fits_a_control_message() -> None:
    # ``contiguous + 1`` is never above (the window would slide over it), so
    # a full window holds REPLAY_WINDOW - 1 numbers above, each 9 bytes.
    top = MAX_INT64 - REPLAY_WINDOW
    full = Window(top, tuple(range(top + 2, top + REPLAY_WINDOW + 1)))
    link = open_link(full)
    assert len(link["welcome"]) <= MAX_CONTROL_BYTES
    assert handshake.read_welcome(link["welcome"], SENDER, RECEIVER.node_id, S_CHALLENGE) == full
    acked = handshake.ack(RECEIVER, SENDER.node_id, link["receiver_challenges"], full)
    assert len(acked) <= MAX_CONTROL_BYTES
    assert handshake.read_ack(acked, SENDER, RECEIVER.node_id, link["sender_challenges"]) == full


# ------------------------------------------------------------ hello


def test_a_hello_from_another_key_than_the_peer_dialled_is_wrong_peer() -> None:
    with refused("wrong_peer"):
        handshake.read_hello(handshake.hello(MALLORY, R_CHALLENGE), RECEIVER.node_id)


@pytest.mark.parametrize("version", [0, 2, 255, -1, MAX_INT64, 2**64 - 1])
def test_a_hello_of_another_link_version_is_refused(version: int) -> None:
    data = handshake.encode(HELLO, Hello(version, RECEIVER.public_key, R_CHALLENGE))
    with refused("unsupported_version"):
        handshake.read_hello(data, RECEIVER.node_id)


def test_a_hello_with_a_short_key_or_challenge_is_malformed() -> None:
    for hello in (
        Hello(LINK_VERSION, RECEIVER.public_key[:31], R_CHALLENGE),
        Hello(LINK_VERSION, RECEIVER.public_key, R_CHALLENGE + b"\x00"),
        Hello(LINK_VERSION, RECEIVER.public_key, b""),
    ):
        with refused("malformed_control"):
            handshake.read_hello(handshake.encode(HELLO, hello), RECEIVER.node_id)


# ------------------------------------------------------------ proof


def _proof_bytes(key: NodeKey, receiver: bytes, challenge: bytes) -> bytes:
    return b"sender" + challenge + key.public_key + receiver


def test_a_proof_signed_over_another_challenge_is_refused() -> None:
    # The proof a sender gave on an earlier connection, replayed on this one.
    earlier = Hello(LINK_VERSION, RECEIVER.public_key, OTHER_CHALLENGE)
    replayed = handshake.proof(SENDER, earlier, S_CHALLENGE)
    assert handshake.read_proof(replayed, RECEIVER, OTHER_CHALLENGE)[0] == SENDER.node_id
    with refused("bad_signature"):
        handshake.read_proof(replayed, RECEIVER, R_CHALLENGE)


def test_a_proof_made_for_another_receiver_is_refused() -> None:
    # Mallory relays Receiver's challenge to Sender as its own hello, and
    # Sender's answer to Receiver: the answer names Mallory's key.
    relayed = Hello(LINK_VERSION, MALLORY.public_key, R_CHALLENGE)
    answer = handshake.proof(SENDER, relayed, S_CHALLENGE)
    with refused("bad_signature"):
        handshake.read_proof(answer, RECEIVER, R_CHALLENGE)


def test_a_proof_signed_by_another_key_than_the_one_it_claims_is_refused() -> None:
    signature = MALLORY.sign(
        Purpose.HANDSHAKE, _proof_bytes(SENDER, RECEIVER.public_key, R_CHALLENGE)
    )
    forged = handshake.encode(PROOF, Proof(SENDER.public_key, S_CHALLENGE, signature))
    with refused("bad_signature"):
        handshake.read_proof(forged, RECEIVER, R_CHALLENGE)


def test_a_proof_signed_for_another_purpose_is_refused() -> None:
    data = _proof_bytes(SENDER, RECEIVER.public_key, R_CHALLENGE)
    for purpose in (Purpose.BATCH, Purpose.ACK, Purpose.EVIDENCE):
        proof = Proof(SENDER.public_key, S_CHALLENGE, SENDER.sign(purpose, data))
        with refused("bad_signature"):
            handshake.read_proof(handshake.encode(PROOF, proof), RECEIVER, R_CHALLENGE)


@pytest.mark.parametrize(
    "key",
    [
        bytes(32),  # a point of small order
        bytes([1]) + bytes(31),  # the identity
        b"\xff" * 32,  # no point at all
        bytes([0xEC]) + b"\xff" * 30 + bytes([0x7F]),  # a non-canonical encoding
    ],
)
def test_a_proof_from_a_key_that_is_no_usable_point_is_a_bad_signature(key: bytes) -> None:
    for signature in (bytes(64), b"\xff" * 64, SENDER.sign(Purpose.HANDSHAKE, b"x")):
        proof = handshake.encode(PROOF, Proof(key, S_CHALLENGE, signature))
        with refused("bad_signature"):
            handshake.read_proof(proof, RECEIVER, R_CHALLENGE)


@given(key=st.binary(min_size=32, max_size=32), signature=st.binary(min_size=64, max_size=64))
def test_a_proof_with_any_key_and_signature_but_a_real_one_is_refused(
    key: bytes, signature: bytes
) -> None:
    with refused("bad_signature"):
        handshake.read_proof(
            handshake.encode(PROOF, Proof(key, S_CHALLENGE, signature)), RECEIVER, R_CHALLENGE
        )


# ------------------------------------------------------------ welcome


def test_a_welcome_over_another_window_is_refused() -> None:
    link = open_link(Window(3))
    signature = handshake.decode(WELCOME, link["welcome"], Welcome).signature
    for window in (Window(4), Window(3, (5,)), Window(MAX_INT64), Window(2)):
        tampered = handshake.encode(WELCOME, Welcome(signature, window))
        with refused("bad_signature"):
            handshake.read_welcome(tampered, SENDER, RECEIVER.node_id, S_CHALLENGE)


def test_a_welcome_from_another_connection_is_refused() -> None:
    # Receiver's welcome on an earlier connection answered another challenge.
    earlier = Proof(SENDER.public_key, OTHER_CHALLENGE, bytes(64))
    replayed = handshake.welcome(RECEIVER, earlier, Window(3))
    with refused("bad_signature"):
        handshake.read_welcome(replayed, SENDER, RECEIVER.node_id, S_CHALLENGE)


def test_a_welcome_for_another_sender_or_from_another_key_is_refused() -> None:
    link = open_link(Window(3))
    # Meant for Mallory's proof over the same challenge.
    for_mallory = handshake.welcome(
        RECEIVER, Proof(MALLORY.public_key, S_CHALLENGE, bytes(64)), Window(3)
    )
    with refused("bad_signature"):
        handshake.read_welcome(for_mallory, SENDER, RECEIVER.node_id, S_CHALLENGE)
    # Mallory answering in Receiver's place.
    by_mallory = handshake.welcome(MALLORY, link["proved"], Window(3))
    with refused("bad_signature"):
        handshake.read_welcome(by_mallory, SENDER, RECEIVER.node_id, S_CHALLENGE)
    # The genuine welcome, read by a sender that thinks it dialled Mallory.
    with refused("bad_signature"):
        handshake.read_welcome(link["welcome"], SENDER, MALLORY.node_id, S_CHALLENGE)


def test_an_ack_cannot_pass_as_a_welcome_nor_a_welcome_as_an_ack() -> None:
    link = open_link(Window(3))
    welcome = handshake.decode(WELCOME, link["welcome"], Welcome)
    as_ack = handshake.encode(ACK, Ack(welcome.window, welcome.signature))
    with refused("bad_signature"):
        handshake.read_ack(as_ack, SENDER, RECEIVER.node_id, link["sender_challenges"])
    acked = handshake.ack(RECEIVER, SENDER.node_id, link["receiver_challenges"], Window(3))
    ack = handshake.decode(ACK, acked, Ack)
    as_welcome = handshake.encode(WELCOME, Welcome(ack.signature, ack.window))
    with refused("bad_signature"):
        handshake.read_welcome(as_welcome, SENDER, RECEIVER.node_id, S_CHALLENGE)


# ------------------------------------------------------------ ack


def test_a_forged_ack_is_never_accepted() -> None:
    link = open_link()
    mine, theirs = link["receiver_challenges"], link["sender_challenges"]
    genuine = handshake.decode(ACK, handshake.ack(RECEIVER, SENDER.node_id, mine, Window(3)), Ack)
    forged = [
        # The genuine signature over a window the receiver never stated.
        handshake.encode(ACK, Ack(Window(10**6), genuine.signature)),
        handshake.encode(ACK, Ack(Window(3, (5,)), genuine.signature)),
        # Signed by another key, or by the sender itself.
        handshake.ack(MALLORY, SENDER.node_id, mine, Window(10**6)),
        handshake.ack(SENDER, SENDER.node_id, mine, Window(10**6)),
        # For another sender.
        handshake.ack(RECEIVER, MALLORY.node_id, mine, Window(10**6)),
        # Over the challenges in the other order.
        handshake.ack(RECEIVER, SENDER.node_id, mine[32:] + mine[:32], Window(10**6)),
        # The receiver's signature over the very bytes of an ack, but made
        # for the handshake: a welcome's purpose.
        handshake.encode(
            ACK,
            Ack(
                Window(3),
                RECEIVER.sign(
                    Purpose.HANDSHAKE,
                    b"ack"
                    + theirs
                    + SENDER.public_key
                    + RECEIVER.public_key
                    + msgspec.msgpack.encode(Window(3)),
                ),
            ),
        ),
        # No signature at all.
        handshake.encode(ACK, Ack(Window(3), bytes(64))),
    ]
    # The ack the receiver did sign reads back.
    signed = handshake.encode(ACK, genuine)
    assert handshake.read_ack(signed, SENDER, RECEIVER.node_id, theirs) == Window(3)
    for data in forged:
        with refused("bad_signature"):
            handshake.read_ack(data, SENDER, RECEIVER.node_id, theirs)


def test_an_ack_from_another_connection_is_never_accepted() -> None:
    link = open_link()
    # What the receiver acknowledged on an earlier connection (one of the
    # two challenges differs), replayed on this one.
    for earlier in (
        OTHER_CHALLENGE + R_CHALLENGE,
        S_CHALLENGE + OTHER_CHALLENGE,
        OTHER_CHALLENGE + OTHER_CHALLENGE,
    ):
        replayed = handshake.ack(RECEIVER, SENDER.node_id, earlier, Window(10**6))
        assert handshake.read_ack(replayed, SENDER, RECEIVER.node_id, earlier) == Window(10**6)
        with refused("bad_signature"):
            handshake.read_ack(replayed, SENDER, RECEIVER.node_id, link["sender_challenges"])


@given(window=windows(), other=windows())
def test_an_acks_signature_covers_exactly_its_window(window: Window, other: Window) -> None:
    challenges = S_CHALLENGE + R_CHALLENGE
    signature = handshake.decode(
        ACK, handshake.ack(RECEIVER, SENDER.node_id, challenges, window), Ack
    ).signature
    moved = handshake.encode(ACK, Ack(other, signature))
    if other == window:
        assert handshake.read_ack(moved, SENDER, RECEIVER.node_id, challenges) == window
    else:
        with refused("bad_signature"):
            handshake.read_ack(moved, SENDER, RECEIVER.node_id, challenges)


def test_an_ack_window_beyond_its_bounds_is_refused_before_any_signature_check() -> None:
    bad = [
        Ack(Window(-1), bytes(64)),
        Ack(Window(MAX_INT64 + 1), bytes(64)),
        Ack(Window(0, (-5,)), bytes(64)),
        Ack(Window(0, (MAX_INT64 + 1,)), bytes(64)),
    ]
    for ack in bad:
        with codes("malformed_control", "control_too_large"):
            handshake.read_ack(
                handshake.encode(ACK, ack), SENDER, RECEIVER.node_id, S_CHALLENGE + R_CHALLENGE
            )


def test_a_window_with_more_numbers_above_than_a_replay_window_holds_is_malformed() -> None:
    # Small numbers take a byte each, so MAX_CONTROL_BYTES alone lets a
    # window list about nine times as many as a replay window can hold.
    challenges = S_CHALLENGE + R_CHALLENGE
    oversized = Window(0, tuple(range(2, REPLAY_WINDOW + 3)))
    data = handshake.ack(RECEIVER, SENDER.node_id, challenges, oversized)
    assert len(data) <= MAX_CONTROL_BYTES
    with refused("malformed_control"):
        handshake.read_ack(data, SENDER, RECEIVER.node_id, challenges)


# ------------------------------------------------------------ damaged messages


def _every_message() -> dict[int, bytes]:
    link = open_link(Window(3, (5, 9)))
    return {
        HELLO: link["hello"],
        PROOF: link["proof"],
        WELCOME: link["welcome"],
        ACK: handshake.ack(RECEIVER, SENDER.node_id, link["receiver_challenges"], Window(7)),
    }


def _read(kind: int, data: Any) -> object:
    """Read ``data`` as the side that expects a ``kind`` message would."""
    if kind == HELLO:
        return handshake.read_hello(data, RECEIVER.node_id)
    if kind == PROOF:
        return handshake.read_proof(data, RECEIVER, R_CHALLENGE)
    if kind == WELCOME:
        return handshake.read_welcome(data, SENDER, RECEIVER.node_id, S_CHALLENGE)
    return handshake.read_ack(data, SENDER, RECEIVER.node_id, S_CHALLENGE + R_CHALLENGE)


@pytest.mark.parametrize("kind", [HELLO, PROOF, WELCOME, ACK])
def test_every_truncation_of_a_control_message_is_refused(kind: int) -> None:
    data = _every_message()[kind]
    _read(kind, data)  # whole, it reads
    with refused("unexpected_message"):
        _read(kind, b"")
    for end in range(1, len(data)):
        with refused("malformed_control"):
            _read(kind, data[:end])


@pytest.mark.parametrize("kind", [HELLO, PROOF, WELCOME, ACK])
def test_a_control_message_with_trailing_bytes_is_refused(kind: int) -> None:
    data = _every_message()[kind]
    for tail in (b"\x00", b"\xc0", data[1:]):
        with refused("malformed_control"):
            _read(kind, data + tail)


@pytest.mark.parametrize("kind", [HELLO, PROOF, WELCOME, ACK])
def test_a_control_message_of_the_wrong_kind_is_unexpected(kind: int) -> None:
    messages = _every_message()
    for other, data in messages.items():
        if other != kind:
            with refused("unexpected_message"):
                _read(kind, data)
        # The right body under a wrong kind byte.
        for byte in {0, 1, 0xFF, *messages} - {kind}:
            with refused("unexpected_message"):
                _read(kind, bytes([byte]) + data[1:])
    # A peer frame (its version byte is 1) is no control message.
    frame = sign_frame(SENDER, RECEIVER.node_id, msgspec.msgpack.encode([1]))
    with refused("unexpected_message"):
        _read(kind, frame)


@pytest.mark.parametrize("kind", [HELLO, PROOF, WELCOME, ACK])
def test_text_instead_of_bytes_is_refused(kind: int) -> None:
    data = _every_message()[kind]
    for text in (data.decode("latin-1"), "", "hello", chr(kind) + "x"):
        with refused("unexpected_message"):
            _read(kind, text)
    for other in (bytearray(data), memoryview(data), None, 0, [kind]):
        with refused("unexpected_message"):
            _read(kind, other)


@pytest.mark.parametrize("kind", [HELLO, PROOF, WELCOME, ACK])
def test_an_oversized_control_message_is_refused_before_it_is_parsed(kind: int) -> None:
    data = _every_message()[kind]
    for size in (MAX_CONTROL_BYTES + 1, 64 * 1024, 10 * 1024 * 1024):
        # Valid MessagePack, had it been parsed.
        huge = data + b"\x00" * (size - len(data))
        with refused("control_too_large"):
            _read(kind, huge)
        with refused("control_too_large"):
            _read(kind, bytes([kind]) + b"\xc1" * (size - 1))
    padded = bytes([kind]) + b"\xc1" * (MAX_CONTROL_BYTES - 1)
    with refused("malformed_control"):
        _read(kind, padded)


# ------------------------------------------------------------ fuzz

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=80),
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=20,
)


def only_remote_errors(kind: int, data: Any) -> object | None:
    try:
        return _read(kind, data)
    except RemoteProtocolError as error:
        assert error.code in {
            "unexpected_message",
            "control_too_large",
            "malformed_control",
            "unsupported_version",
            "wrong_peer",
            "bad_signature",
        }, error
        return None


@given(kind=st.sampled_from(sorted(KINDS)), data=st.binary(max_size=300))
@example(kind=HELLO, data=bytes([HELLO]))
@example(kind=ACK, data=bytes([ACK, 0x92, 0x92, 0xCF] + [0xFF] * 8))
def test_arbitrary_bytes_only_ever_raise_remote_protocol_errors(kind: int, data: bytes) -> None:
    with codes("unexpected_message", "control_too_large", "malformed_control"):
        handshake.decode(kind, data, KINDS[kind])
    only_remote_errors(kind, data)


@given(kind=st.sampled_from(sorted(KINDS)), data=st.binary(max_size=300))
def test_arbitrary_bodies_under_the_right_kind_only_raise_remote_protocol_errors(
    kind: int, data: bytes
) -> None:
    only_remote_errors(kind, bytes([kind]) + data)


@given(kind=st.sampled_from(sorted(KINDS)), tree=trees)
def test_arbitrary_msgpack_values_only_raise_remote_protocol_errors(kind: int, tree: Any) -> None:
    only_remote_errors(kind, bytes([kind]) + msgspec.msgpack.encode(tree))


@given(
    kind=st.sampled_from(sorted(KINDS)),
    fields=st.lists(trees, min_size=1, max_size=4),
    where=st.integers(0, 3),
    data=st.data(),
)
def test_near_miss_messages_only_raise_remote_protocol_errors(
    kind: int, fields: list[Any], where: int, data: st.DataObject
) -> None:
    """A genuine message with one field swapped for an arbitrary value, or
    fields added or dropped: the struct validation behind the parser."""
    genuine = list(msgspec.msgpack.decode(_every_message()[kind][1:]))
    at = where % len(genuine)
    shapes = [
        [*genuine[:at], fields[0], *genuine[at + 1 :]],
        genuine + fields,
        genuine[:at],
        [genuine[at], *genuine],
    ]
    shape = data.draw(st.sampled_from(shapes))
    only_remote_errors(kind, bytes([kind]) + msgspec.msgpack.encode(shape))


@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_a_genuine_message_with_one_byte_changed_is_refused_unless_unsigned(
    kind: int, data: st.DataObject
) -> None:
    """Whatever byte of a genuine message changes, the reader refuses it,
    or reads exactly what the genuine message says: the only bytes no
    signature covers are a hello's challenge (the sender answers it, so a
    changed one fails the proof) and the sender's challenge in a proof
    (the receiver's welcome answers it, so a changed one fails there)."""
    genuine = _every_message()[kind]
    at = data.draw(st.integers(0, len(genuine) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != genuine[at]))
    damaged = genuine[:at] + bytes([byte]) + genuine[at + 1 :]
    read = only_remote_errors(kind, damaged)
    if read is None:
        return
    if kind == HELLO:
        assert isinstance(read, Hello)
        assert (read.version, read.key) == (LINK_VERSION, RECEIVER.public_key)
    elif kind == PROOF:
        assert isinstance(read, tuple)
        sender, proof = read
        assert sender == SENDER.node_id
        assert proof.key == SENDER.public_key
        # Only the sender's own challenge changed: the welcome would not check.
        assert proof.challenge != S_CHALLENGE
        welcome = handshake.welcome(RECEIVER, proof, Window(3))
        with refused("bad_signature"):
            handshake.read_welcome(welcome, SENDER, RECEIVER.node_id, S_CHALLENGE)
    elif kind == WELCOME:
        assert read == Window(3, (5, 9))
    else:
        assert read == Window(7)


def test_encode_and_decode_agree_on_every_kind() -> None:
    for kind, data in _every_message().items():
        message = handshake.decode(kind, data, KINDS[kind])
        assert handshake.encode(kind, message) == data
