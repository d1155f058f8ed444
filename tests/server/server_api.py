"""A small test client for the server API: keys, signed requests, envelopes.

It speaks the wire protocol from the outside, with the same pure helpers the
reference CLI uses (`sync.auth`, `crypto`), so API tests exercise what a real
device sends.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from crypto import (
    ChainKey,
    Envelope,
    KemPrivateKey,
    SigningKey,
    VerifyKey,
    seal_revision,
    seal_sender_key,
)
from sync.auth import sign_request
from sync.invite import Enrollment, Invite, InviteCode, seal_label
from sync.messages import b64decode, b64encode, encode_push_cbor
from sync.roster import Member, Role, Roster, SignedRoster

ADMIN_TOKEN = "test-admin-token-" + "x" * 32


def b64(data: bytes) -> str:
    return b64encode(data)


@dataclass
class DeviceChain:
    """A device's signing key and its envelope chain (seq, prev, sender key)."""

    key: SigningKey
    org: bytes
    seq: int = 0
    prev: bytes = bytes(32)
    key_seq: int = 0
    chain: ChainKey | None = None
    sent: list[Envelope] = field(default_factory=list)

    @property
    def device_id(self) -> bytes:
        return self.key.verify_key.key_id

    def key_envelope(self, roster: Roster) -> Envelope:
        self.chain = ChainKey.generate()
        self.seq += 1
        env = seal_sender_key(
            org=self.org,
            seq=self.seq,
            prev=self.prev,
            roster_version=roster.version,
            chain_key=self.chain,
            recipients=roster.recipients(),
            signing_key=self.key,
        )
        self.key_seq, self.prev = self.seq, env.id
        self.sent.append(env)
        return env

    def revision(
        self, roster: Roster, report: bytes, parents: list[bytes], content: bytes
    ) -> Envelope:
        if self.chain is None:
            self.key_envelope(roster)
        assert self.chain is not None
        self.seq += 1
        from crypto import message_key_at

        mk = message_key_at(self.chain, self.seq - self.key_seq)
        env = seal_revision(
            org=self.org,
            report=report,
            parents=parents,
            seq=self.seq,
            prev=self.prev,
            roster_version=roster.version,
            key_seq=self.key_seq,
            message_key=mk,
            content=content,
            signing_key=self.key,
        )
        self.prev = env.id
        self.sent.append(env)
        return env


class Api:
    """Signed JSON requests against a Starlette TestClient or an httpx2 client."""

    def __init__(self, client: Any, base_url: str = "http://testserver") -> None:
        self.client = client
        self.base_url = base_url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: SigningKey | None = None,
        created: int | None = None,
        nonce: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """``body`` is sent as JSON; ``content`` as it is (set its content-type in ``headers``)."""
        if content is not None:
            data, all_headers = content, {}
        else:
            data = b"" if body is None else json.dumps(body).encode()
            all_headers = {"content-type": "application/json"} if body is not None else {}
        if key is not None:
            all_headers.update(
                sign_request(
                    method=method,
                    url=self.base_url + path,
                    body=data,
                    key=key,
                    created=int(time.time()) if created is None else created,
                    nonce=nonce or secrets.token_urlsafe(16),
                )
            )
        all_headers.update(headers or {})
        return self.client.request(method, path, content=data or None, headers=all_headers)


@dataclass
class Org:
    """An organisation created through the API, with its founding coordinator."""

    api: Api
    org_id: bytes
    coordinator: SigningKey
    coordinator_kem: KemPrivateKey
    server_key: VerifyKey
    rosters: list[SignedRoster]

    @property
    def path(self) -> str:
        return f"/v1/orgs/{b64(self.org_id)}"

    @property
    def roster(self) -> Roster:
        return self.rosters[-1].roster

    def as_coordinator(self, method: str, sub: str, body: Any = None, **kw: Any) -> Any:
        return self.api.call(method, self.path + sub, body, key=self.coordinator, **kw)

    def publish(self, roster: Roster, signer: SigningKey | None = None) -> Any:
        signed = roster.next_version(self.rosters[-1]).sign(signer or self.coordinator)
        response = self.as_coordinator("POST", "/roster", {"roster": b64(signed.to_bytes())})
        if response.status_code == 200:
            self.rosters.append(signed)
        return response

    def add_device(
        self, role: Role = Role.FIELD, *, admit: bool = True, label: str = "phone"
    ) -> DeviceChain:
        """Invite and enroll a fresh device; admit it into a new roster version."""
        key = SigningKey.generate()
        document, code = Invite.create(
            org_id=self.org_id,
            role=role,
            expires_at=int(time.time()) + 3600,
            roster_fingerprint=self.rosters[-1].hash,
            server_url=self.api.base_url,
            signing_key=self.coordinator,
        )
        r = self.as_coordinator("POST", "/invites", {"invite": b64(document.to_bytes())})
        assert r.status_code == 201, r.text
        enroll(self.api, self, code, key, role, label=label)
        if admit:
            member = Member(key.verify_key.key_id, key.verify_key, role)
            r = self.publish(self.roster.with_member(member))
            assert r.status_code == 200, r.text
        return DeviceChain(key=key, org=self.org_id)

    def coordinator_chain(self) -> DeviceChain:
        return DeviceChain(key=self.coordinator, org=self.org_id)

    def push(self, device: DeviceChain, envelopes: list[Envelope], **kw: Any) -> Any:
        body = {"envelopes": [b64(e.to_bytes()) for e in envelopes]}
        return self.api.call("POST", self.path + "/push", body, key=device.key, **kw)

    def push_cbor(self, device: DeviceChain, envelopes: list[Envelope], **kw: Any) -> Any:
        """The same push with a CBOR body (envelopes as byte strings)."""
        headers = {"content-type": "application/cbor", **kw.pop("headers", {})}
        content = encode_push_cbor([e.to_bytes() for e in envelopes])
        return self.api.call(
            "POST", self.path + "/push", key=device.key, content=content, headers=headers, **kw
        )

    def changes(self, cursor: str = "", limit: int | None = None) -> Any:
        query = f"?cursor={cursor}" + (f"&limit={limit}" if limit else "")
        return self.as_coordinator("GET", "/changes" + query)


def enroll(
    api: Api, org: Org, code: InviteCode, key: SigningKey, role: Role, label: str = "phone"
) -> Any:
    sealed = seal_label(
        label, secret=code.secret, invite_id=code.invite_id, device_id=key.verify_key.key_id
    )
    kem = KemPrivateKey.generate().public_key if role is Role.COORDINATOR else None
    enrollment = Enrollment(org.org_id, code.invite_id, key.verify_key, role, sealed, kem).sign(key)
    r = api.call(
        "POST",
        org.path + "/enroll",
        {"enrollment": b64(enrollment.to_bytes()), "secret": b64(code.secret)},
    )
    assert r.status_code == 201, r.text
    return r


def genesis(server_key: VerifyKey, coordinator: SigningKey, kem: KemPrivateKey) -> SignedRoster:
    org_id = secrets.token_bytes(16)
    member = Member(
        coordinator.verify_key.key_id, coordinator.verify_key, Role.COORDINATOR, kem.public_key
    )
    return Roster(org_id, 1, bytes(32), server_key, (member,)).sign(coordinator)


def create_org(api: Api) -> Org:
    info = api.client.get("/v1/server").json()
    server_key = VerifyKey(b64decode(info["server_key"]))
    coordinator, kem = SigningKey.generate(), KemPrivateKey.generate()
    signed = genesis(server_key, coordinator, kem)
    r = api.client.post(
        "/v1/orgs",
        json={"roster": b64(signed.to_bytes())},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text
    assert b64decode(r.json()["org_id"]) == signed.roster.org_id
    return Org(api, signed.roster.org_id, coordinator, kem, server_key, [signed])
