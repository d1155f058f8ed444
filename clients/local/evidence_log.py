"""The log evidence a coordinator keeps for evidence bundles (PROTOCOL §22, docs/EVIDENCE.md §3.4).

Records (in the encrypted store, `clients.local.store`):
  leaves/<first seq>  the envelope ids of one validated feed page, in server order: the log's
                      leaves first seq+1 .. first seq+count (PROTOCOL §17.1)
  ckpt/<size>         every checkpoint this profile verified and adopted (a receipt's, the
                      log endpoint's, a feed page's), the first one seen for each size

From them `log_proofs` builds, for the revisions a bundle discloses, the smallest kept
checkpoint that holds each one and one batch inclusion proof per checkpoint (PROTOCOL §17.2),
after checking that the kept leaves hash to the checkpoint's root: a checkpoint they do not
match is not used.
"""

from __future__ import annotations

from collections.abc import Iterable

from clients.local.store import Store
from crypto import VerificationFailed, VerifyKey
from sync.checkpoint import Checkpoint
from sync.evidence import LogProof, prove_in_log

__all__ = ["forget_leaves", "keep_checkpoint", "keep_leaves", "log_proofs"]


def keep_leaves(store: Store, after: int, ids: Iterable[bytes]) -> None:
    data = b"".join(ids)
    if data:
        store.put("leaves", f"{after:016d}", data)


def forget_leaves(store: Store) -> None:
    for name, _ in store.items("leaves"):
        store.delete("leaves", name)


def keep_checkpoint(store: Store, document: bytes) -> None:
    try:
        size = Checkpoint.size_of(document)
    except VerificationFailed:
        return
    name = f"{size:020d}"
    if store.get("ckpt", name) is None:
        store.put("ckpt", name, document)


def _leaves(store: Store) -> list[bytes]:
    """The pulled log's leaves from 1 on, as far as the kept pages are contiguous."""
    out: list[bytes] = []
    for name, data in store.items("leaves"):
        if int(name) != len(out) or len(data) % 32:
            break
        out.extend(data[i : i + 32] for i in range(0, len(data), 32))
    return out


def log_proofs(
    store: Store, revisions: Iterable[bytes], *, org_id: bytes, server_key: VerifyKey
) -> tuple[LogProof, ...]:
    """For each revision, the smallest kept checkpoint whose tree holds it, with a batch
    inclusion proof per checkpoint (`sync.evidence.prove_in_log`)."""
    checkpoints = [document for _, document in store.items("ckpt")]
    return prove_in_log(
        _leaves(store), checkpoints, revisions, org_id=org_id, server_key=server_key
    )
