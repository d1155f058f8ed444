"""Switching a profile to new keys after a key rotation (PROTOCOL §19.7).

The new secrets are kept in the encrypted store (``rotation/pending``) before anything is
sent, so a rotation interrupted after the server stored the new roster version is finished
by running it again, never lost: the profile would otherwise hold only a revoked key.
"""

from __future__ import annotations

from clients.local.profile import Profile, passphrase
from clients.local.store import Secrets, StoreError
from sync.client import DeviceState
from sync.grant import grant_id
from sync.roster import SignedRoster

__all__ = ["adopt_new_keys", "finish_field_rotation", "pending_secrets"]


def pending_secrets(profile: Profile) -> Secrets:
    """The new secrets of a rotation in progress, drawn (and kept) if there is none."""
    kept = profile.store.get("rotation", "pending")
    if kept is not None:
        return Secrets.decode(kept)
    current = profile.store.secrets
    fresh = Secrets.generate(coordinator=current.kem_seed is not None)
    new = Secrets(fresh.signing_seed, current.store_key, fresh.kem_seed)
    profile.store.put("rotation", "pending", new.encode())
    return new


def adopt_new_keys(profile: Profile, roster: SignedRoster, grants: list[bytes]) -> None:
    """After the server stored ``roster``: keep it and the grants, write the key file with
    the new secrets, and start the new device chain (the old id is revoked)."""
    kept = profile.store.get("rotation", "pending")
    if kept is None:
        raise StoreError("no key rotation in progress")
    new = Secrets.decode(kept)
    if profile.device_state().outbox:
        raise StoreError("the outbox must be empty before a rotation: sync first")
    with profile.store.transaction():
        profile.set_roster(roster)
        for document in grants:
            profile.store.put("grant", grant_id(document).hex(), document)
        profile.meta["device"] = new.signing_key.verify_key.key_id
        profile.save_meta()
        profile.save_device(DeviceState(org_id=profile.org_id, device_id=profile.device_id))
    profile.store.replace_secrets(passphrase(confirm=False), new)
    profile.store.delete("rotation", "pending")
    profile._view, profile._index = None, None
    profile._next_generation()


def finish_field_rotation(profile: Profile) -> bytes | None:
    """A field device whose rotation a coordinator applied (its new key is in the verified
    roster, its old id revoked) switches to the new key: the new device id, or None.

    Envelopes still queued were sealed with the old key after its revocation point: the
    server refuses them, so they are kept aside (shown by `outbox`), never dropped."""
    kept = profile.store.get("rotation", "pending")
    if kept is None:
        return None
    new = Secrets.decode(kept)
    new_id = new.signing_key.verify_key.key_id
    if profile.roster.roster.member(new_id) is None:
        return None
    state = profile.device_state()
    fresh = DeviceState(org_id=profile.org_id, device_id=new_id)
    fresh.sent = state.sent
    fresh.rejected = [
        *state.rejected,
        *((item, "revoked", "sealed with the key the rotation replaced") for item in state.outbox),
    ]
    with profile.store.transaction():
        profile.meta["device"] = new_id
        profile.save_meta()
        profile.save_device(fresh)
    profile.store.replace_secrets(passphrase(confirm=False), new)
    profile.store.delete("rotation", "pending")
    return new_id
