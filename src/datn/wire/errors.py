"""Errors of the wire layer, split by whose fault they are.

As in h11, a :class:`RemoteProtocolError` means the peer broke the rules: its
frame was malformed, badly signed, misaddressed or replayed. The receiver drops
that frame, keeps the link and changes nothing. A :class:`LocalProtocolError`
means this node misused the wire layer (an out-of-range value in a message it
built, a key that is not the batch's sender): a bug to fix here, never a reason
to blame the peer. Both carry a machine-readable ``code``; the codes are:

- remote: ``frame_too_large``, ``frame_too_short``, ``unsupported_version``,
  ``bad_signature``, ``malformed``, ``unknown_sender``, ``wrong_sender``,
  ``wrong_receiver``, ``replayed``, ``seq_beyond_window``, ``bad_statement``;
- local: ``bad_seed``, ``bad_node_id``, ``bad_message``, ``wrong_key``,
  ``empty_batch``, ``too_many_envelopes``, ``mixed_link``, ``frame_too_large``,
  ``seq_exhausted``.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A frame or message was refused; ``code`` says why, machine-readably."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """This node tried to send something the protocol does not allow."""
