"""Push the outbox in batches and apply each item's result on its own (PROTOCOL §15.2, §15.3).

Rules:
* Batches stay within the server's ``max_batch_items`` and ``max_batch_bytes``; a 413
  halves the batch; an envelope refused alone as too large is kept aside.
* The answer is a `PushResponse`: one result per item, in request order, each naming
  its envelope (§15.2 item 3), and a receipt signed by the server key pinned in the
  newest verified roster, for this organisation and device (§15.3 item 1).  Anything
  else is `ServerMisbehaved`: nothing of that answer is applied.
* The receipt's checkpoint must hold its items (its batch inclusion proof) and extend
  the checkpoint the client holds (the answer's consistency proof from ``since``); else
  nothing of the answer is applied (§17.6 item 1).
* Stored results (`ItemStatus.stored`) are purged only when the receipt lists the
  envelope with its device sequence number; retryable ones stay queued; terminal ones
  leave the queue for `rejected`, where they are kept and shown (never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto import VerificationFailed, VerifyKey
from sync.client.chain import DeviceState, OutboxItem
from sync.client.events import BatchAcknowledged, BatchSplit, ItemRefused
from sync.client.flow import Flow, Request, ServerMisbehaved, decode, expect
from sync.client.log import LogPosition, advance
from sync.messages import CBOR_MEDIA_TYPE, PushResponse, encode_push_cbor
from sync.receipt import Receipt

__all__ = ["PushSummary", "push_flow"]

_FRAMING = 1024
"""Bytes kept free in a batch for the CBOR framing around the envelopes."""


@dataclass(slots=True)
class PushSummary:
    stored: int = 0
    purged: int = 0
    retry_later: int = 0
    rejected: int = 0
    batches: int = 0
    splits: int = 0


def _batch(items: list[OutboxItem], max_items: int, max_bytes: int) -> list[OutboxItem]:
    batch: list[OutboxItem] = []
    size = 0
    for item in items:
        cost = len(item.data)  # the server's limit counts envelope bytes (PROTOCOL §8.2)
        if batch and (len(batch) >= max_items or size + cost > max_bytes):
            break
        batch.append(item)
        size += cost
    return batch


def push_flow(
    state: DeviceState,
    *,
    server_key: VerifyKey,
    max_items: int,
    max_bytes: int,
    org_path: str,
    log: LogPosition,
    route: str = "push",
) -> Flow[PushSummary]:
    """Push the outbox once through; each item is tried at most once per run.

    ``route`` ``"relay"`` pushes envelopes of other devices this one carries (§23.3): the
    same batches, answers and receipt checks."""
    summary = PushSummary()
    max_items = max(1, max_items)
    max_bytes = max(1, max_bytes - _FRAMING)
    tried: set[bytes] = set()
    while True:
        pending = [i for i in state.outbox if i.envelope_id not in tried]
        batch = _batch(pending, max_items, max_bytes)
        if not batch:
            return summary
        response = yield Request(
            "POST",
            f"{org_path}/{route}",
            query=log.query(),
            content=encode_push_cbor([i.data for i in batch]),
            content_type=CBOR_MEDIA_TYPE,
            max_answer_bytes=65536 + 4096 * len(batch),
        )
        if isinstance(response, tuple) or response is None:
            raise TypeError("the driver must send a Response back for a Request")
        if response.status == 413:
            if len(batch) == 1:
                item = batch[0]
                _reject(state, item, "too_large", "the server refuses an envelope this large")
                summary.rejected += 1
                tried.add(item.envelope_id)
                yield ItemRefused(
                    item.seq, "too_large", "the server refuses an envelope this large"
                )
                continue
            summary.splits += 1
            max_items = max(1, len(batch) // 2)
            yield BatchSplit(max_items)
            continue
        answer = decode(expect(response, 200, 201), PushResponse, what="push")
        receipt = _verified_receipt(answer, state, server_key)
        _check_results(batch, answer)  # before anything of the answer is adopted
        yield from advance(
            log, receipt.checkpoint, answer.consistency or [], what="push", strict=True
        )
        refused = _apply_results(state, batch, answer, receipt, summary)
        tried.update(i.envelope_id for i in batch)
        summary.batches += 1
        for item, status, detail in refused:
            yield ItemRefused(item.seq, status, detail)
        yield BatchAcknowledged(summary.stored, summary.purged, summary.retry_later)


def _reject(state: DeviceState, item: OutboxItem, status: str, detail: str) -> None:
    state.outbox = [i for i in state.outbox if i.envelope_id != item.envelope_id]
    state.rejected.append((item, status, detail))


def _verified_receipt(answer: PushResponse, state: DeviceState, server_key: VerifyKey) -> Receipt:
    try:
        receipt, _ = Receipt.verify_logged(
            answer.receipt, server_key, org_id=state.org_id, device_id=state.device_id
        )
        return receipt
    except (VerificationFailed, ValueError) as exc:
        raise ServerMisbehaved("the server's receipt does not verify") from exc


def _check_results(batch: list[OutboxItem], answer: PushResponse) -> None:
    """One result per item, in request order, each naming its envelope (§15.2 item 3)."""
    if len(answer.results) != len(batch):
        raise ServerMisbehaved("push results do not match the batch")
    for item, result in zip(batch, answer.results, strict=True):
        if result.envelope_id != item.envelope_id:
            raise ServerMisbehaved("push results are not in request order")


def _apply_results(
    state: DeviceState,
    batch: list[OutboxItem],
    answer: PushResponse,
    receipt: Receipt,
    summary: PushSummary,
) -> list[tuple[OutboxItem, str, str]]:
    """Apply a validated answer (`_check_results`); the items refused for good (already
    moved aside)."""
    covered = {i.envelope_id: i for i in receipt.items}
    state.receipts.append(answer.receipt)
    purge: set[bytes] = set()
    refused: list[tuple[OutboxItem, str, str]] = []
    for item, result in zip(batch, answer.results, strict=True):
        if result.status.stored:
            summary.stored += 1
            receipted = covered.get(item.envelope_id)
            if receipted is not None and receipted.device_seq == item.seq:
                purge.add(item.envelope_id)
                state.last_server_seq = max(state.last_server_seq, receipted.server_seq)
            else:
                summary.retry_later += 1  # stored, but not receipted: re-push gets a receipt
        elif result.status.retryable:
            summary.retry_later += 1
        else:
            detail = (result.detail or str(result.status))[:300]
            _reject(state, item, str(result.status), detail)
            refused.append((item, str(result.status), detail))
            summary.rejected += 1
    if purge:
        state.outbox = [i for i in state.outbox if i.envelope_id not in purge]
        state.sent += len(purge)
        summary.purged += len(purge)
    return refused
