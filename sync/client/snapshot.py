"""A `CoordinatorView` saved from its own verified results and restored without re-verifying.

Rules:
* A snapshot holds what the view derived (chains, sender keys, anchors, waiting revisions,
  decrypted revisions, flags, findings), never a verdict the view would not reach again:
  refusals of envelopes not taken in are left out (a rebuild from the kept envelopes does
  not see them either).
* It names the trust it was computed under (the digest of roster, roster history,
  enrollments and the coordinator's key) and what of it the verdicts used: each device's
  standing and the roster versions held (`sync.client.retrust`). Restored under other trust,
  only the devices whose standing changed are judged again from their envelopes; under
  another coordinator key it is refused (`SnapshotRefused`) and the caller rebuilds.
* Restore takes the envelopes the snapshot names from the caller (their bytes stay where
  they are kept) and takes in every other envelope given, as a sync would: restored and
  then fed equals rebuilt from the union (tests/sync/client/test_view_snapshot.py).
* The snapshot holds sender keys (CK0): the caller keeps it sealed like the envelopes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from crypto import ChainKey, KemPrivateKey, encoding, parse_envelope
from sync.client.findings import Finding
from sync.client.retrust import chain_order, rejudge, standings
from sync.client.view import CoordinatorView
from sync.invite import Enrollment
from sync.merge import ReportDag, Revision
from sync.report import ReportContent
from sync.roster import SignedRoster

__all__ = [
    "SNAPSHOT_VERSION",
    "SnapshotRefused",
    "chain_order",
    "restore_view",
    "snapshot_view",
    "trust_digest",
    "view_trust",
]

SNAPSHOT_VERSION = 1


class SnapshotRefused(ValueError):
    """The snapshot cannot stand for a rebuild: another version or trust, or missing data."""


def trust_digest(
    roster: SignedRoster,
    kem_key: KemPrivateKey,
    enrollments: Iterable[Enrollment],
    history: Iterable[int],
    grants: Iterable[bytes] = (),
) -> bytes:
    """What a view's verdicts depend on besides the envelopes, as one digest (``grants``:
    the ids of the grant documents it was given, PROTOCOL §19)."""
    return hashlib.sha256(
        encoding.encode(
            [
                "sealbox/v1/view-trust",
                roster.to_bytes(),
                kem_key.public_key.key_id,
                sorted([e.device_id, e.signing_key.key_id] for e in enrollments),
                sorted(history),
                sorted(grants),
            ]
        )
    ).digest()


def view_trust(view: CoordinatorView) -> bytes:
    """The `trust_digest` of the trust ``view`` holds now."""
    return trust_digest(
        view.roster, view.kem_key, view.enrollments.values(), view.history, view.grants.documents
    )


def snapshot_view(view: CoordinatorView) -> bytes:
    """The view's derived state as canonical CBOR."""
    members = {r: set(dag.revisions) for r, dag in view._member_dags.items()}
    revisions = [
        [rev.id, rev.report, list(rev.parents), rev.author,
         view._plain.get(rev.id) or rev.content.encode(),
         rev.id in members.get(report, ())]
        for report, dag in sorted(view._dags.items())
        for rev in sorted(dag.revisions.values(), key=lambda r: r.id)
    ]  # fmt: skip
    chains = [
        [envelope_id, device, seq, view._prev[envelope_id]]
        for device, chain in sorted(view._chains.items())
        for seq, ids in sorted(chain.items())
        for envelope_id in sorted(ids)
    ]
    raw: dict[str, Any] = {
        "v": SNAPSHOT_VERSION,
        "t": view_trust(view),
        "k": view.kem_key.public_key.key_id,
        "sd": [[device, s] for device, s in standings(view).items()],
        "hv": sorted(view.history),
        "ep": sorted([d, v] for d, v in view._epochs),
        "held": sorted(view.held),
        "f": sorted([f.kind, f.device, f.seq, f.detail] for f in view._findings),
        "ch": chains,
        "sk": sorted([k, ck0.raw] for k, (ck0, _, _) in view._sender_keys.items()),
        "mm": sorted(view._mismatched),
        "an": sorted([r, c, k] for r, (c, k) in view._anchor.items()),
        "w": [
            [device, c, [e.id for e in waiting]]
            for (device, c), waiting in sorted(view._waiting.items())
        ],
        "r": revisions,
        "fl": sorted(
            [r, sorted([x, d] for x, d in flags)] for r, flags in view._report_flags.items()
        ),
    }
    return encoding.encode(raw)


def restore_view(
    data: bytes,
    *,
    roster: SignedRoster,
    kem_key: KemPrivateKey,
    envelopes: Mapping[bytes, bytes],
    enrollments: Iterable[Enrollment] = (),
    history: Iterable[SignedRoster] = (),
    also_keys: Iterable[KemPrivateKey] = (),
    grants: Iterable[bytes] = (),
) -> CoordinatorView:
    """A view equal to one rebuilt from ``envelopes`` under this trust, from ``data``.

    ``envelopes`` maps envelope ids to their bytes: every envelope the snapshot names must
    be there; the others are taken in (verified) after the restore, in chain order.
    """
    view = CoordinatorView(
        roster=roster,
        kem_key=kem_key,
        enrollments=enrollments,
        history=history,
        also_keys=also_keys,
        grants=grants,
    )
    try:
        raw = encoding.decode(data)
        if not isinstance(raw, dict) or raw.get("v") != SNAPSHOT_VERSION:
            raise SnapshotRefused("not a view snapshot of this version")
        if raw["k"] != kem_key.public_key.key_id:
            raise SnapshotRefused("the snapshot was computed under another coordinator key")
        _fill(view, raw, envelopes)
        if raw["t"] != view_trust(view):  # another roster, history or enrollments
            rejudge(view, {d: s for d, s in raw["sd"]}, raw["hv"])
    except SnapshotRefused:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotRefused(f"a malformed view snapshot ({type(exc).__name__})") from None
    known = view.envelopes.keys() | view.held.keys()
    fresh = [d for i, d in envelopes.items() if i not in known]
    for item in sorted(fresh, key=chain_order):
        view.ingest(item)
    return view


def _fill(view: CoordinatorView, raw: dict[str, Any], envelopes: Mapping[bytes, bytes]) -> None:
    def envelope(envelope_id: bytes) -> bytes:
        data = envelopes.get(envelope_id)
        if data is None:
            raise SnapshotRefused("an envelope the snapshot names is not given")
        return data

    view.held = {i: envelope(i) for i in raw["held"]}
    view._findings = {Finding(k, d, s, t) for k, d, s, t in raw["f"]}
    for envelope_id, device, seq, prev in raw["ch"]:
        view.envelopes[envelope_id] = envelope(envelope_id)
        view._place(device, seq, envelope_id, prev)
    for key, ck0 in raw["sk"]:
        chain = ChainKey(ck0)
        view._sender_keys[key] = (chain, 0, chain)
    view._mismatched = set(raw["mm"])
    view._anchor = {r: (c, k) for r, c, k in raw["an"]}
    for device, c, ids in raw["w"]:
        view._waiting[(device, c)] = [parse_envelope(envelope(i)) for i in ids]
    for rid, report, parents, author, content, member in raw["r"]:
        revision = Revision(rid, report, tuple(parents), author, ReportContent.decode(content))
        view._plain[rid] = content
        view._dags.setdefault(report, ReportDag(report)).add(revision)
        if member:
            view._member_dags.setdefault(report, ReportDag(report)).add(revision)
    view._report_flags = {r: {(x, d) for x, d in flags} for r, flags in raw["fl"]}
    view._epochs = {(d, v) for d, v in raw["ep"]}
    view.changed.clear()
