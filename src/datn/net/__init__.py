"""A node's links to its peers over real sockets (DESIGN.md sections 9, 10).

``handshake`` holds the link's control messages (the handshake in which both
nodes prove their keys, and the receiver's signed acknowledgements), pure;
``links`` runs the links on asyncio and WebSockets: a durable outbox, resends,
replay windows kept across restarts, reconnects with backoff.
"""

from __future__ import annotations

from datn.net.links import LinkSettings, PeerLinks

__all__ = ["LinkSettings", "PeerLinks"]
