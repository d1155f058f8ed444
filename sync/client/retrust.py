"""A `CoordinatorView` brought under new trust by judging again only what the change touches.

Rules:
* Besides the envelopes, a view's verdicts depend on the trust only through each signing
  device's *standing* (`standing`: a roster member with its key and revocation point, a
  device vouched for by an enrollment, or unknown) and, for the recipients check of each
  sender key (§4.3 item 6), on whether the roster version it names is in the history.
  The coordinator's own key is not part of it: under another key a view is rebuilt.
* A trust change therefore forgets everything derived from the envelopes of each device
  whose standing changed, or whose sender keys name a roster version that came into (or
  left) the history, and takes those envelopes in again under the new trust, in chain
  order: the view equals one rebuilt from the same envelopes under the new trust
  (tests/sync/client/test_view_retrust.py), at the cost of those devices' envelopes only.
* Nothing another device concluded is touched: every finding, flag, chain, key and revision
  is attributed to the device whose envelope gave it.
* A grant that gives this coordinator a key it lacked (§19) changes only the epochs it keys:
  each key envelope held that a grant keys and that is not open is taken again
  (`open_granted`, found from the ledger, not from what changed), and the revisions that
  waited for it open, as they would in a view that had the grant from the start
  (tests/sync/client/test_view_grants.py). An epoch not held yet needs nothing: its key
  envelope finds the grant when it arrives. With two key envelopes at one seq the guess of
  which one opens depends on order (PROTOCOL §4.3): the view takes everything in again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from crypto import parse_envelope
from sync.invite import Enrollment
from sync.merge import ReportDag
from sync.roster import Roster, SignedRoster

if TYPE_CHECKING:
    from sync.client.view import CoordinatorView

__all__ = [
    "chain_order",
    "forget_devices",
    "open_granted",
    "rejudge",
    "retrust",
    "standing",
    "standings",
]


def chain_order(data: bytes) -> tuple[bytes, int]:
    """Device, then seq: the order in which each ratchet is walked once (one parse)."""
    header = parse_envelope(data).header
    return header.device, header.seq


def standing(view: CoordinatorView, device: bytes) -> list[Any]:
    """How ``view``'s trust knows ``device`` (canonical CBOR-ready)."""
    member = view.roster.roster.member(device)
    if member is not None:
        revoked = -1 if member.revoked_after is None else member.revoked_after
        return ["member", member.signing_key.key_id, revoked]
    enrollment = view.enrollments.get(device)
    if enrollment is not None:
        return ["enrolled", enrollment.signing_key.key_id]
    return ["unknown"]


def _devices(view: CoordinatorView) -> set[bytes]:
    """Every device with an envelope in the view (taken in or held)."""
    return set(view._chains) | {parse_envelope(d).header.device for d in view.held.values()}


def standings(view: CoordinatorView) -> dict[bytes, list[Any]]:
    """Each device's standing under the view's trust: what a snapshot keeps to re-judge."""
    return {device: standing(view, device) for device in sorted(_devices(view))}


def forget_devices(view: CoordinatorView, devices: set[bytes]) -> list[bytes]:
    """Forget everything derived from the envelopes of ``devices``; return those envelopes."""
    if not devices:
        return []
    ids = {i for d in devices for slot in view._chains.pop(d, {}).values() for i in slot}
    envelopes = [view.envelopes.pop(i) for i in ids]
    for held_id, data in list(view.held.items()):
        if parse_envelope(data).header.device in devices:
            envelopes.append(view.held.pop(held_id))
    for i in ids:
        view._prev.pop(i, None)
        view._sender_keys.pop(i, None)
        view._marks.pop(i, None)
        view._plain.pop(i, None)
    view._mismatched -= ids
    view._anchor = {r: a for r, a in view._anchor.items() if r not in ids}
    for key in [k for k in view._waiting if k[0] in devices]:
        view.changed.update(e.header.report for e in view._waiting.pop(key) if e.header.report)
    view._findings = {f for f in view._findings if f.device not in devices}
    view._epochs = {(d, v) for d, v in view._epochs if d not in devices}
    for dags in (view._dags, view._member_dags):
        for report, dag in list(dags.items()):
            if any(r.author in devices for r in dag.revisions.values()):
                view.changed.add(report)
                kept = [r for r in dag.revisions.values() if r.author not in devices]
                if kept:
                    dags[report] = ReportDag(report, kept)
                else:
                    del dags[report]
    for report, flags in list(view._report_flags.items()):
        if any(d in devices for _, d in flags):
            view.changed.add(report)
            kept_flags = {(reason, d) for reason, d in flags if d not in devices}
            if kept_flags:
                view._report_flags[report] = kept_flags
            else:
                del view._report_flags[report]
    return envelopes


def rejudge(
    view: CoordinatorView, before: Mapping[bytes, list[Any]], history_before: Iterable[int]
) -> set[bytes]:
    """Judge again, under the view's trust now, the devices whose standing or epoch history
    differs from ``before`` (standings) and ``history_before`` (roster versions held)."""
    had = set(history_before)
    now = set(view.history)
    moved = had ^ now
    devices = {d for d in _devices(view) | set(before) if standing(view, d) != before.get(d)}
    devices |= {d for d, version in view._epochs if version in moved}
    envelopes = forget_devices(view, devices)
    for data in sorted(envelopes, key=chain_order):
        view.ingest(data)
    return devices


def retrust(
    view: CoordinatorView,
    roster: SignedRoster,
    enrollments: Iterable[Enrollment],
    history: Mapping[int, Roster],
) -> set[bytes]:
    """Put ``view`` under this trust (roster, the whole enrollment set, roster history by
    version), judging again only the devices it touches; returns them."""
    before, history_before = standings(view), set(view.history)
    view.roster = roster
    view.enrollments = {e.device_id: e for e in enrollments}
    view.history = {**history, roster.roster.version: roster.roster}
    devices = rejudge(view, before, history_before)
    # Grants are verified against the roster versions held (§19.3): one refused for a
    # version not verified then is verified again now, and its epochs taken in.
    view.grants.history = view.history
    if view.grants.retry() and view.envelopes:
        open_granted(view)
    return devices


def open_granted(view: CoordinatorView) -> None:
    """Open, in chain order, the epochs a grant keys whose key envelope is held and not
    opened yet: not by its own wrap, nor refused for a broken commitment (that finding
    stands; a spare grant of one epoch is not a new key, `GrantLedger.add`)."""
    shut = [
        parse_envelope(view.envelopes[e])
        for e in view.grants.keys
        if e in view.envelopes and e not in view._sender_keys and e not in view._mismatched
    ]
    for envelope in sorted(shut, key=lambda e: (e.header.device, e.header.seq)):
        header = envelope.header
        if len(view._chains[header.device][header.seq]) > 1:
            view._replay()  # a fork at the key's seq: which key opens depends on order
            return
        author = view._author(header.device)
        if author is None or (author[1] is not None and not author[1].accepts_seq(header.seq)):
            continue  # as `ingest` left it: not vouched for, or signed after revocation
        view._take_sender_key(envelope, author[0])
