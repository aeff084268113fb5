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

A :class:`JournalError` is neither side's: the node's own journal or snapshot
could not be written, or what a store handed back is not something this code
wrote. A store that returns damaged bytes must stop recovery with a clear
message, so the error names what is wrong. Its codes are:

- reading an entry: ``too_large``, ``malformed`` (not MessagePack, truncated,
  or not shaped like an entry), ``unsupported_version``, ``unknown_tag``,
  ``bad_field`` (a field of a known input is missing, of the wrong type, out
  of range, or refused by its value's own validation), ``unknown_field`` (a
  stored key this code does not know, as a newer writer would leave) and
  ``not_as_stored`` (a stored value that does not read back as it was
  stored);
- writing an entry: ``bad_entry`` (the entry cannot be encoded, or would not
  read back exactly as it is).

A :class:`SnapshotError` is a :class:`JournalError` about a snapshot, with
``too_short``, ``too_large``, ``bad_magic``, ``unsupported_version`` (of the
snapshot format), ``bad_checksum``, ``unsupported_state_version`` (of the
node state's shape), ``malformed``, ``bad_field``, ``unknown_field`` and
``not_as_stored`` on reading, and ``bad_snapshot`` on writing.
"""

from __future__ import annotations


class WireError(Exception):
    """Something the wire layer refused; ``code`` says why, machine-readably."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProtocolError(WireError):
    """A frame or message was refused; ``code`` says why, machine-readably."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """This node tried to send something the protocol does not allow."""


class JournalError(WireError):
    """A journal entry could not be written, or stored bytes could not be read
    back as one."""


class SnapshotError(JournalError):
    """A snapshot could not be written, or stored bytes could not be read back
    as one."""
