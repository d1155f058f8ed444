"""The local records of carried files (PROTOCOL §23): the relay queue, and what a coordinator
imported that the feed has not delivered yet.

Records (inside the encrypted `Store`, like every other):
  relay/<id>      an envelope of another device, imported from a carried file, to relay
  relayed/<id>    one the server refused when relayed: ``{status, detail}``, kept to show
  carried/<id>    coordinators: an envelope taken into the view from a carried file, not
                  yet seen in the feed (so the feed's log checks still judge it, §23.4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from clients.local.store import Store
from sync.client import CarriedSeenInFeed, RelayDelivered

__all__ = [
    "carried_waiting",
    "mark_carried",
    "queue_relay",
    "relay_queue",
    "relay_refused",
    "relay_delivered",
    "seen_in_feed",
]


def relay_queue(store: Store) -> list[bytes]:
    return [data for _, data in store.items("relay")]


def queue_relay(store: Store, envelopes: Iterable[tuple[bytes, bytes]]) -> None:
    """Queue ``(envelope id, envelope bytes)`` for the next sync's relay push."""
    with store.transaction():
        for envelope_id, data in envelopes:
            store.put("relay", envelope_id.hex(), data)


def relay_delivered(store: Store, event: RelayDelivered) -> None:
    with store.transaction():
        for envelope_id in event.delivered:
            store.delete("relay", envelope_id.hex())
        for envelope_id, status, detail in event.refused:
            store.delete("relay", envelope_id.hex())
            store.put_cbor("relayed", envelope_id.hex(), {"status": status, "detail": detail})
        for receipt in event.receipts:  # the relay's proof of what it delivered
            store.put("relayreceipt", hashlib.sha256(receipt).hexdigest(), receipt)


def relay_refused(store: Store) -> list[dict[str, Any]]:
    return [
        {"envelope_id": name, **store.get_cbor("relayed", name)}
        for name, _ in store.items("relayed")
    ]


def carried_waiting(store: Store) -> frozenset[bytes]:
    return frozenset(bytes.fromhex(name) for name, _ in store.items("carried"))


def mark_carried(store: Store, envelope_ids: Iterable[bytes]) -> None:
    with store.transaction():
        for envelope_id in envelope_ids:
            store.put("carried", envelope_id.hex(), b"")


def seen_in_feed(store: Store, event: CarriedSeenInFeed) -> None:
    with store.transaction():
        for envelope_id in event.envelope_ids:
            store.delete("carried", envelope_id.hex())
