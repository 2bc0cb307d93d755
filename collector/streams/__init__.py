"""Stream sources: public posts pushed over a WebSocket (Bluesky Jetstream, Misskey streaming), beside the
polled feeds.

``config`` (what a stream is), ``events`` (a decoded frame), one protocol adapter per kind (``jetstream``,
``misskey``: frames in, events out, pure), ``prefilter`` (which posts may be stored), ``save`` (a batch into
the store, its cursor in the same transaction) and ``runner`` (the connection: reconnects, stalls,
backpressure). ``ADAPTERS`` maps a kind to its adapter: a new network is one module and one entry.
"""

from __future__ import annotations

from collector.streams import jetstream, misskey

ADAPTERS = {"jetstream": jetstream, "misskey": misskey}
