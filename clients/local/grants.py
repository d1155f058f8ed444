"""A coordinator profile's grants (PROTOCOL §19): the documents seen, whom to grant to, and
when each key envelope was first stored here (what ``--from DATE`` compares).

Records (inside the encrypted `Store`):
  grant/<id>      every grant document seen (pulled, or made here), verified on every load
  grantto/<dev>   a grant policy: grant this coordinator the epochs it lacks, every sync;
                  ``{"since": unix seconds | None}``
  keyseen/<id>    when this profile first stored a key envelope (its own clock)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clients.local.profile import Profile
from crypto import encoding, parse_envelope
from sync.grant import grant_id

__all__ = [
    "first_seen",
    "grant_policies",
    "keep_grants",
    "note_first_seen",
    "set_policy",
]


def keep_grants(profile: Profile, documents: Iterable[bytes]) -> int:
    """Keep grant documents not kept before and take them into the view; how many were new."""
    fresh = []
    for document in documents:
        name = grant_id(document).hex()
        if profile.store.get("grant", name) is None:
            fresh.append((name, document))
    if not fresh:
        return 0
    view = profile.view()
    with profile.store.transaction():
        for name, document in fresh:
            profile.store.put("grant", name, document)
        profile._next_generation()
    view.add_grants(document for _, document in fresh)
    profile._index_dirty = True
    return len(fresh)


def note_first_seen(profile: Profile, envelopes: Iterable[bytes], now: int) -> None:
    """Remember when each key envelope among ``envelopes`` was first stored here."""
    for data in envelopes:
        envelope = parse_envelope(data)
        if (
            envelope.header.kind == "key"
            and profile.store.get("keyseen", envelope.id.hex()) is None
        ):
            profile.store.put_cbor("keyseen", envelope.id.hex(), now)


def first_seen(profile: Profile) -> dict[bytes, int]:
    return {bytes.fromhex(name): int(raw) for name, raw in _cbor_items(profile, "keyseen")}


def grant_policies(profile: Profile) -> dict[bytes, int | None]:
    return {bytes.fromhex(name): raw.get("since") for name, raw in _cbor_items(profile, "grantto")}


def set_policy(profile: Profile, device: bytes, since: int | None) -> None:
    """Grant ``device`` the epochs it lacks at every sync (only from ``since`` if given)."""
    profile.store.put_cbor("grantto", device.hex(), {"since": since})


def _cbor_items(profile: Profile, kind: str) -> list[tuple[str, Any]]:
    return [(name, encoding.decode(raw)) for name, raw in profile.store.items(kind)]
