"""Prometheus metrics of a node, in the text exposition format (served at
``/metrics`` on the operator's address)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from datn.api.process import process_use
from datn.api.transport import Places
from datn.runtime import NodeRuntime
from datn.runtime.node import Histogram
from datn.store import Store, StoreError


class ApiCounters:
    """What the API itself counts."""

    def __init__(self) -> None:
        self.responses: Counter[int] = Counter()
        self.auth_refused: Counter[str] = Counter()
        self.rate_limited = 0
        self.places: dict[str, Places] = {}
        """The API servers' connection places, by server (``traders``,
        ``operator``)."""


def render(
    runtime: NodeRuntime,
    api: ApiCounters,
    links: Mapping[str, int] | None = None,
    link_gauges: Sequence[tuple[str, int, bool, bool]] = (),
) -> str:
    """The node's ``/metrics`` in Prometheus' text format. ``links``: the
    peer links' counters; ``link_gauges``: per peer, the messages not yet
    acknowledged and whether the links to and from it are up
    (:meth:`datn.net.links.PeerLinks.gauges`)."""
    stats = runtime.stats
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    replies = stats.replies
    metric(
        "datn_orders_total",
        "counter",
        "Orders answered, by outcome.",
        [
            ('{outcome="accepted"}', replies.get("Accepted", 0)),
            ('{outcome="rejected"}', replies.get("Rejected", 0)),
        ],
    )
    metric(
        "datn_executions_total",
        "counter",
        "Fills reported to this node's traders.",
        [("", replies.get("Executed", 0))],
    )
    core_stats = runtime.core.stats
    metric(
        "datn_locks_total",
        "counter",
        "Locks this node held for peers' orders, by how they ended.",
        [
            (f'{{outcome="{outcome}"}}', core_stats.get(f"locks_{outcome}", 0))
            for outcome in ("taken", "released", "expired", "refused")
        ],
    )
    metric(
        "datn_core_events_total",
        "counter",
        "Every counter the node core keeps, by name.",
        [(f'{{name="{name}"}}', value) for name, value in sorted(core_stats.items())],
    )
    metric("datn_inputs_total", "counter", "Inputs taken in.", [("", stats.inputs)])
    metric(
        "datn_journal_position",
        "gauge",
        "The journal's last durable entry.",
        [("", stats.position)],
    )
    metric(
        "datn_snapshot_position",
        "gauge",
        "The journal position of the latest snapshot.",
        [("", stats.snapshot_position)],
    )
    metric("datn_snapshots_total", "counter", "Snapshots kept.", [("", stats.snapshots)])
    metric(
        "datn_snapshot_failures_total",
        "counter",
        "Snapshots that failed (the journal still holds everything).",
        [("", stats.snapshot_failures)],
    )
    metric(
        "datn_full_collections_total",
        "counter",
        "Full scans of the cyclic garbage collector, run when the node is quiet"
        " (or every ten minutes).",
        [("", stats.full_collections)],
    )
    metric(
        "datn_last_full_collection_milliseconds",
        "gauge",
        "How long the latest full scan of the garbage collector paused the node.",
        [("", stats.last_full_collection_ms)],
    )
    metric(
        "datn_last_snapshot_milliseconds",
        "gauge",
        "How long the latest snapshot took to build and save, in the background.",
        [("", round(stats.last_snapshot_ms, 3))],
    )
    size = store_bytes(runtime.store)
    if size is not None:
        metric(
            "datn_store_bytes",
            "gauge",
            "What the node's store takes on disk: journal, snapshots, history and outbox"
            " (the journal is kept whole, so this grows with what the node takes in).",
            [("", size)],
        )
    _histogram(
        lines, "datn_commit_milliseconds", "Time each group commit took.", stats.commit_histogram
    )
    _histogram(lines, "datn_commit_group_size", "Inputs per group commit.", stats.group_histogram)
    metric(
        "datn_inline_commits_total",
        "counter",
        "Group commits of one input made on the loop's thread (the store was free).",
        [("", stats.inline_commits)],
    )
    metric(
        "datn_commits_delayed_total",
        "counter",
        "Group commits that waited (commit_delay_us) for more inputs to share them.",
        [("", stats.delayed_commits)],
    )
    metric(
        "datn_store_failures_total",
        "counter",
        "Commits the store refused (the node stops at the first).",
        [("", 0 if runtime.failure is None else 1)],
    )
    metric(
        "datn_http_responses_total",
        "counter",
        "Answers of the traders' API, by status.",
        [(f'{{status="{status}"}}', count) for status, count in sorted(api.responses.items())],
    )
    metric(
        "datn_auth_refused_total",
        "counter",
        "Requests refused as unauthenticated, by reason.",
        [(f'{{code="{code}"}}', count) for code, count in sorted(api.auth_refused.items())],
    )
    metric("datn_rate_limited_total", "counter", "Requests answered 429.", [("", api.rate_limited)])
    places = sorted(api.places.items())
    metric(
        "datn_api_connections",
        "gauge",
        "Connections the API servers hold, by server.",
        [(f'{{server="{name}"}}', p.held.total()) for name, p in places],
    )
    metric(
        "datn_api_connections_refused_total",
        "counter",
        "Connections dropped as they were accepted, by server and reason: every place taken"
        " (total) or every place of their address (address).",
        [
            (f'{{server="{name}",reason="{reason}"}}', p.refused[reason])
            for name, p in places
            for reason in ("total", "address")
        ],
    )
    if links is not None:
        metric(
            "datn_link_events_total",
            "counter",
            "Peer links: frames sent, resent, received and duplicated, links opened and "
            "closed, frames read late for a peer over its message budget (inbound_throttled), "
            "and what peers sent that was refused (frame:CODE, handshake:CODE, ack:CODE).",
            [(f'{{name="{name}"}}', count) for name, count in sorted(links.items())],
        )
    if link_gauges:
        metric(
            "datn_link_unacknowledged_messages",
            "gauge",
            "Messages sent to each peer that it has not acknowledged yet; they stay in the"
            " durable outbox until it does, so one that only grows is a peer away.",
            [(f'{{peer="{_label(peer)}"}}', unacked) for peer, unacked, _, _ in link_gauges],
        )
        metric(
            "datn_link_up",
            "gauge",
            "Whether the link to each peer (sending) and from it (receiving) is up.",
            [
                (f'{{peer="{_label(peer)}",direction="{direction}"}}', int(up))
                for peer, _, sending, receiving in link_gauges
                for direction, up in (("sending", sending), ("receiving", receiving))
            ],
        )
    metric(
        "datn_peer_messages_refused_total",
        "counter",
        "Peers' messages the journal could not hold, dropped unapplied.",
        [("", stats.inputs_refused)],
    )
    use = process_use()
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        [("", round(use.cpu_seconds, 6))],
    )
    if use.resident_bytes is not None:
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            [("", use.resident_bytes)],
        )
    if use.open_fds is not None:
        metric("process_open_fds", "gauge", "Open file descriptors.", [("", use.open_fds)])
    if use.threads_cpu_seconds:
        metric(
            "datn_thread_cpu_seconds_total",
            "counter",
            "CPU time of each of the node's threads, by name (the event loop's is"
            " MainThread, the store's writer datn-store_0) and mode (user or system).",
            [
                (f'{{thread="{_label(name)}",mode="{mode}"}}', round(seconds, 6))
                for (name, mode), seconds in sorted(use.threads_cpu_seconds.items())
            ],
        )
    return "\n".join(lines) + "\n"


def samples(text: str) -> dict[str, float]:
    """The samples of an exposition in the text format (as :func:`render`
    writes it), by name with labels: ``{'datn_inputs_total': 12.0, ...}``."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


class Moved:
    """How far a node's samples moved between two reads of its
    ``/metrics`` (:func:`samples`), as benchmarks account for a run."""

    def __init__(self, before: dict[str, float], after: dict[str, float]) -> None:
        self.before = before
        self.after = after

    def __call__(self, name: str) -> float:
        return self.after.get(name, 0.0) - self.before.get(name, 0.0)

    def thread_cpu(self, thread: str, mode: str | None = None) -> float:
        """CPU seconds of ``thread`` in ``mode`` (user or system; both if None)."""
        modes = ("user", "system") if mode is None else (mode,)
        return sum(
            self(f'datn_thread_cpu_seconds_total{{thread="{thread}",mode="{m}"}}') for m in modes
        )


def _label(value: str) -> str:
    """``value`` escaped for a label in the text exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram(lines: list[str], name: str, text: str, histogram: Histogram) -> None:
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} histogram")
    counts = histogram.counts or [0] * (len(histogram.bounds) + 1)
    running = 0
    for bound, count in zip(histogram.bounds, counts, strict=False):
        running += count
        lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {histogram.count}')
    lines.append(f"{name}_sum {_number(histogram.total)}")
    lines.append(f"{name}_count {histogram.count}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def store_bytes(store: Store) -> int | None:
    """What ``store`` takes on disk (:meth:`Store.size_bytes`); None where
    it keeps nothing on disk, or cannot say now (a database out of reach:
    the node's commits say so in their own way)."""
    try:
        return store.size_bytes()
    except StoreError:
        return None
