"""Relay push: envelopes of other devices, brought in a carried file, pushed for them
(PROTOCOL §23.3).

Rules:
* The relay queue holds envelopes this device imported from carried files (`sync.carry`);
  none is its own chain, none is opened.  It is pushed after the device's own outbox, to
  ``POST /relay``, in the same batches and with the same checks of the answer as a push
  (`sync.client.push.push_flow`): one result per item in request order, a receipt for
  this organisation and *this* device, its checkpoint holding its items and extending
  the held one (§17.6 item 1).  Anything else stops the run and changes nothing.
* An envelope leaves the relay queue only when a verified receipt lists it (with its
  author's sequence number); a terminal refusal takes it out and keeps the reason to
  show; ``missing_parents`` keeps it for the next sync (its parents may still be with
  their author).
* The authors are not told by the relay: each learns at its own next push, which the
  server answers ``duplicate`` with a receipt, and purges then (§15.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto import VerifyKey, parse_envelope
from sync.client.chain import DeviceState, OutboxItem
from sync.client.events import BatchAcknowledged, BatchSplit, ItemRefused, RelayDelivered
from sync.client.flow import Flow
from sync.client.log import LogPosition
from sync.client.push import push_flow

__all__ = ["RelaySummary", "relay_flow"]


@dataclass(frozen=True, slots=True)
class RelaySummary:
    delivered: int = 0
    refused: int = 0
    waiting: int = 0


def relay_flow(
    queue: Sequence[bytes],
    *,
    org_id: bytes,
    device_id: bytes,
    server_key: VerifyKey,
    max_items: int,
    max_bytes: int,
    org_path: str,
    log: LogPosition,
) -> Flow[RelaySummary]:
    """Push the relay queue once through; one `RelayDelivered` names what to drop."""
    items: list[OutboxItem] = []
    authors: list[bytes] = []
    for data in queue:
        envelope = parse_envelope(data)
        items.append(OutboxItem(envelope.id, data, envelope.header.seq, envelope.header.report))
        authors.append(envelope.header.device)
    # Each author's chain in order, so parents go before their children in a batch.
    order = sorted(range(len(items)), key=lambda i: (authors[i], items[i].seq))
    items = [items[i] for i in order]
    carried = DeviceState(org_id=org_id, device_id=device_id)
    carried.outbox = items
    inner = push_flow(
        carried,
        server_key=server_key,
        max_items=max_items,
        max_bytes=max_bytes,
        org_path=org_path,
        log=log,
        route="relay",
    )
    # The push events speak of this device's own outbox: the relay's are one event, below.
    reply = None
    try:
        while True:
            message = inner.send(reply)
            if isinstance(message, (BatchAcknowledged, BatchSplit, ItemRefused)):
                reply = None
                continue
            reply = yield message
    except StopIteration:
        pass
    finally:
        inner.close()
    left = {i.envelope_id for i in carried.outbox}
    refused = tuple((i.envelope_id, status, detail) for i, status, detail in carried.rejected)
    refused_ids = {r[0] for r in refused}
    delivered = tuple(i.envelope_id for i in items if i.envelope_id not in left | refused_ids)
    if delivered or refused:
        yield RelayDelivered(delivered, refused, tuple(carried.receipts))
    return RelaySummary(len(delivered), len(refused), len(left))
