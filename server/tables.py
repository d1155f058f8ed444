"""The server's storage schema: SQLModel ``table=True`` classes only.

What the server stores is ciphertext plus the routing header protocol v1 defines
(docs/PROTOCOL.md §7.6 lists every column and why it is needed).  Ids are random
or hashes; times are whole seconds or whole days, never finer than needed.

The hot paths (push, changes) use SQLAlchemy Core on these tables' ``__table__``;
Alembic migrations in ``migrations/versions`` create exactly this schema on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "Device",
    "EnvelopeRow",
    "Equivocation",
    "Head",
    "InviteRow",
    "LogNode",
    "Org",
    "ReceiptRow",
    "RequestNonce",
    "RosterFreshness",
    "RosterVersion",
    "ServerMeta",
    "metadata",
]

# Stable constraint names so migrations are reproducible on both backends.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


class ServerMeta(SQLModel, table=True):
    """One row: the database epoch (16 random bytes drawn when the database was created)."""

    __tablename__ = "server_meta"
    id: int = Field(primary_key=True)
    epoch: bytes = Field(sa_type=LargeBinary)


class Org(SQLModel, table=True):
    """An organisation. ``last_seq`` is the per-org server sequence counter (taken under lock).

    ``log_frontier``: the transparency log's right edge at size ``last_seq`` (PROTOCOL §17.1);
    ``checkpoint``: the signed checkpoint of that size (§17.2), both written by the push
    that grew the log.  ``recovery_key``: the newest roster version's recovery key (§20).
    """

    __tablename__ = "orgs"
    id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    created_day: int
    last_seq: int = Field(default=0, sa_type=BigInteger)
    roster_version: int = Field(default=1)
    bytes_stored: int = Field(default=0, sa_type=BigInteger)
    log_frontier: bytes | None = Field(default=None, sa_type=LargeBinary)  # None: empty
    checkpoint: bytes | None = Field(default=None, sa_type=LargeBinary)
    # The Ed25519 half of the recovery key of the newest roster version (PROTOCOL §20.4):
    # it may sign requests that read and extend the roster.  None: no recovery key.
    recovery_key: bytes | None = Field(default=None, sa_type=LargeBinary)


class LogNode(SQLModel, table=True):
    """A perfect subtree of an organisation's transparency log (PROTOCOL §17.1): the hash over
    leaves ``[idx << level, (idx + 1) << level)``.  Only levels ≥ 4 are stored (16 leaves
    and more, about one row per 8 envelopes); smaller ones are rehashed from envelope ids."""

    __tablename__ = "log_nodes"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    level: int = Field(primary_key=True)
    idx: int = Field(sa_type=BigInteger, primary_key=True)
    hash: bytes = Field(sa_type=LargeBinary)


class RosterVersion(SQLModel, table=True):
    """Every roster version, exactly as its coordinator signed it."""

    __tablename__ = "roster_versions"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    version: int = Field(primary_key=True)
    hash: bytes = Field(sa_type=LargeBinary)
    document: bytes = Field(sa_type=LargeBinary)


class RosterFreshness(SQLModel, table=True):
    """The newest coordinator-signed roster freshness statement of an organisation, exactly
    as signed (PROTOCOL §18.2); ``version`` and ``issued_at`` are its ``v`` and ``t``."""

    __tablename__ = "roster_freshness"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    version: int
    issued_at: int = Field(sa_type=BigInteger)
    document: bytes = Field(sa_type=LargeBinary)


class InviteRow(SQLModel, table=True):
    """A registered invite: the signed document and the hash of its secret (never the secret).

    ``cancellation``: the first coordinator-signed cancellation stored (PROTOCOL §6.7); once
    set, every enrollment with the invite is refused (``invite_cancelled``).
    """

    __tablename__ = "invites"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    invite_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    secret_hash: bytes = Field(sa_type=LargeBinary)
    role: str
    expires_at: int = Field(sa_type=BigInteger)
    document: bytes = Field(sa_type=LargeBinary)
    used_by: bytes | None = Field(default=None, sa_type=LargeBinary)
    cancellation: bytes | None = Field(default=None, sa_type=LargeBinary)


class Device(SQLModel, table=True):
    """A device known to the org: enrolled through an invite and/or listed in a roster version.

    ``state``: ``enrolled`` (invite only), ``admitted`` (listed, active), ``revoked``.
    ``watermark``: the highest device seq n such that 1..n are all stored.
    ``max_seq``: the highest stored device seq (holes lie between the two).
    """

    __tablename__ = "devices"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    device_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    signing_key: bytes = Field(sa_type=LargeBinary)
    role: str
    state: str
    enrollment: bytes | None = Field(default=None, sa_type=LargeBinary)
    invite_id: bytes | None = Field(default=None, sa_type=LargeBinary)
    admitted_version: int | None = None
    revoked_after: int | None = Field(default=None, sa_type=BigInteger)
    revoked_in_version: int | None = None
    equivocation: bool = False
    watermark: int = Field(default=0, sa_type=BigInteger)
    max_seq: int = Field(default=0, sa_type=BigInteger)


class EnvelopeRow(SQLModel, table=True):
    """A stored envelope (revision or sender key) with its routing header columns.

    ``flags`` bit 1: signed after its device's revocation point (set when the
    revoking roster version arrives).
    """

    __tablename__ = "envelopes"
    __table_args__ = (
        UniqueConstraint("org_id", "envelope_id"),
        UniqueConstraint("org_id", "device_id", "device_seq"),
        Index("ix_envelopes_org_id_report_id", "org_id", "report_id"),
    )
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    server_seq: int = Field(sa_type=BigInteger, primary_key=True)
    envelope_id: bytes = Field(sa_type=LargeBinary)
    device_id: bytes = Field(sa_type=LargeBinary)
    device_seq: int = Field(sa_type=BigInteger)
    prev: bytes = Field(sa_type=LargeBinary)
    kind: str
    report_id: bytes | None = Field(default=None, sa_type=LargeBinary)
    flags: int = 0
    data: bytes = Field(sa_type=LargeBinary)


class Head(SQLModel, table=True):
    """The current heads of each report (several heads = a conflict)."""

    __tablename__ = "heads"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    report_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    envelope_id: bytes = Field(sa_type=LargeBinary, primary_key=True)


class Equivocation(SQLModel, table=True):
    """Evidence: an envelope contradicting its device's stored chain. Never served as data."""

    __tablename__ = "equivocations"
    id: int | None = Field(default=None, primary_key=True)
    org_id: bytes = Field(sa_type=LargeBinary, foreign_key="orgs.id", index=True)
    device_id: bytes = Field(sa_type=LargeBinary)
    device_seq: int = Field(sa_type=BigInteger)
    envelope_id: bytes = Field(sa_type=LargeBinary)
    data: bytes = Field(sa_type=LargeBinary)


class ReceiptRow(SQLModel, table=True):
    """A signed receipt, kept so a device can fetch it again (GET /receipts)."""

    __tablename__ = "receipts"
    __table_args__ = (Index("ix_receipts_org_id_device_id_id", "org_id", "device_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: bytes = Field(sa_type=LargeBinary, foreign_key="orgs.id")
    device_id: bytes = Field(sa_type=LargeBinary)
    document: bytes = Field(sa_type=LargeBinary)


class GrantRow(SQLModel, table=True):
    """A coordinator-signed grant (PROTOCOL §19), kept exactly as signed and opaque: the
    server checks who signed it and for which organisation, never what it wraps."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("org_id", "grant_id"),)
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    seq: int = Field(sa_type=BigInteger, primary_key=True)
    grant_id: bytes = Field(sa_type=LargeBinary)
    granter: bytes = Field(sa_type=LargeBinary)
    grantee: bytes = Field(sa_type=LargeBinary)
    received_at: int = Field(sa_type=BigInteger)
    document: bytes = Field(sa_type=LargeBinary)


class RotationRow(SQLModel, table=True):
    """A device's signing-key rotation request (PROTOCOL §19.7), signed by its old and new
    keys, kept until a coordinator applies it in a roster version."""

    __tablename__ = "rotations"
    org_id: bytes = Field(sa_type=LargeBinary, primary_key=True, foreign_key="orgs.id")
    old_device: bytes = Field(sa_type=LargeBinary, primary_key=True)
    new_device: bytes = Field(sa_type=LargeBinary, primary_key=True)
    received_at: int = Field(sa_type=BigInteger)
    document: bytes = Field(sa_type=LargeBinary)


class RequestNonce(SQLModel, table=True):
    """Seen (key id, nonce) pairs of signed requests, kept for the replay window."""

    __tablename__ = "request_nonces"
    key_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    nonce: str = Field(primary_key=True, max_length=128)
    created: int = Field(sa_type=BigInteger, index=True)


# The attachment tables share this metadata (migrations/versions/0002_attachments.py).
from server import tables_attachments as _attachments  # noqa: E402, F401
