"""The client side of attachments against the real server app (PROTOCOL §13.1-§13.5).

Seal on attach (streamed, one pass), upload with resume from the server's status, and
download where every chunk is verified before it is written.  The adversary is the server
(or anything between it and the coordinator): it reorders, duplicates, drops, appends,
splices and flips bits, and each of those fails the download, names the attachment and
leaves no partial output behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from attach_support import AttachEnv, attach_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.local.store import Secrets, Store
from clients.local.transport import NetworkError, Transport
from clients.reference_cli.attachment_commands import download_attachment
from clients.reference_cli.attachments import (
    PENDING_KIND,
    SEALED_DIR,
    AttachmentFailed,
    pending_uploads,
    seal_file,
    seal_for_report,
    upload_pending,
)
from crypto import VerificationFailed
from crypto.padding import padded_length
from crypto.stream import open_chunks, sealed_size
from server.blobstore import FilesystemBlobStore
from sync.attachments import SealedTransfer, UploadPlan, UploadStatus, chunk_offset
from sync.client import Request
from sync.messages import b64encode
from sync.report import AttachmentManifest, ReportContent
from sync.roster import Role

CS = 256  # the smallest padded size: 0..255 bytes seal to exactly one chunk


@dataclass
class FakeProfile:
    """The parts of a CLI profile the attachment code uses: home, encrypted store, meta."""

    home: Path
    store: Store
    org_path: str
    meta: dict[str, Any] = field(default_factory=dict)


def make_profile(home: Path, org_path: str) -> FakeProfile:
    home.mkdir(parents=True, exist_ok=True)
    return FakeProfile(home, Store(home, Secrets.generate(coordinator=False)), org_path)


def transport_for(env: AttachEnv, key: Any, client: httpx2.Client | None = None) -> Transport:
    t = Transport("http://testserver", signing_key=key, retries=1, sleep=lambda s: None)
    t.client.close()
    t.client = client or env.client
    return t


def sealed_chunks(profile: FakeProfile, pending: Any) -> list[bytes]:
    raw = (profile.home / SEALED_DIR / pending.sealed_file).read_bytes()
    m = pending.manifest
    return [
        raw[chunk_offset(i, m.chunk_size) : chunk_offset(i + 1, m.chunk_size)]
        for i in range(m.chunk_count)
    ]


# --- sealing -----------------------------------------------------------------------------------


def sizes_under_test() -> list[int]:
    return [0, 1, CS - 1, CS, CS + 1, 10 * CS + 7]


@pytest.mark.parametrize("size", sizes_under_test())
def test_seal_file_round_trip_and_geometry(tmp_path: Path, size: int) -> None:
    """Empty, 1 byte, exactly one chunk (255 + marker = 256), chunk + 1, multi-chunk."""
    data = os.urandom(size)
    (tmp_path / "in.bin").write_bytes(data)
    entry, pending = seal_file(tmp_path / "in.bin", tmp_path / "sealed", chunk_size=CS)
    assert entry.size == size and entry.sha256 == hashlib.sha256(data).digest()
    assert entry.transfer is not None
    m = entry.transfer.manifest
    assert (m.chunk_count, m.total_size) == sealed_size(size, CS)
    if size <= CS - 1:
        assert m.chunk_count == 1
    raw = (tmp_path / "sealed" / pending.sealed_file).read_bytes()
    assert len(raw) == m.total_size and hashlib.sha256(raw).digest() == m.sha256
    assert size < 16 or data not in raw
    chunks = [raw[chunk_offset(i, CS) : chunk_offset(i + 1, CS)] for i in range(m.chunk_count)]
    opened = b"".join(
        open_chunks(entry.transfer.key, entry.attachment_id, chunks, chunk_size=CS, expected=m)
    )
    assert opened == data
    # The report content carries the whole entry, and parses back to the same thing.
    content = ReportContent(client_time=1, attachments=(entry,))
    again = ReportContent.decode(content.encode()).attachments[0]
    assert again == entry


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 6000), chunk_size=st.sampled_from([1, 17, 64, 256, 1000]))
def test_seal_file_sizes_property(tmp_path: Path, size: int, chunk_size: int) -> None:
    data = os.urandom(size)
    src = tmp_path / f"in-{secrets.token_hex(4)}"
    src.write_bytes(data)
    entry, pending = seal_file(src, tmp_path / "sealed", chunk_size=chunk_size)
    assert entry.transfer is not None
    m = entry.transfer.manifest
    assert m.total_size - 16 * m.chunk_count == padded_length(size)
    raw = (tmp_path / "sealed" / pending.sealed_file).read_bytes()
    chunks = [
        raw[chunk_offset(i, chunk_size) : chunk_offset(i + 1, chunk_size)]
        for i in range(m.chunk_count)
    ]
    assert [entry.transfer.chunk_length(i) for i in range(m.chunk_count)] == [
        len(c) for c in chunks
    ]
    out = open_chunks(entry.transfer.key, entry.attachment_id, chunks, chunk_size=chunk_size,
                      expected=m)  # fmt: skip
    assert b"".join(out) == data


def test_sealed_transfer_entry_refuses_malformed_input() -> None:
    good = {"k": bytes(32), "z": 256, "c": 1, "t": 272, "h": bytes(32)}
    assert SealedTransfer.from_cbor(good).manifest.total_size == 272
    from sync.attachments import AttachmentError

    for bad in (
        {**good, "k": bytes(31)},
        {**good, "t": 273},  # not a padding bucket
        {**good, "c": 2},
        {**good, "z": 0},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "h"},
        {**good, "z": True},
        [1, 2],
    ):
        with pytest.raises(AttachmentError):
            SealedTransfer.from_cbor(bad)


def test_upload_plan_refuses_a_lying_status() -> None:
    transfer = SealedTransfer(bytes(32), seal_geometry := _manifest(3000))
    plan = UploadPlan(secrets.token_bytes(16), transfer)
    status = UploadStatus(
        upload_id=plan.upload_id,
        state="pending",
        chunk_size=seal_geometry.chunk_size,
        chunk_count=seal_geometry.chunk_count,
        total_size=seal_geometry.total_size,
        received=[0, 2],
        received_bytes=0,
    )
    plan.check_status(status)
    assert plan.remaining(status.received) == [1] + list(range(3, seal_geometry.chunk_count))
    from sync.attachments import AttachmentError

    for change in (
        {"received": [seal_geometry.chunk_count]},
        {"total_size": seal_geometry.total_size + 16},
        {"upload_id": secrets.token_bytes(16)},
        {"state": "complete", "sha256": bytes(32)},
    ):
        with pytest.raises(AttachmentError):
            plan.check_status(status.model_copy(update=change))


def _manifest(size: int) -> Any:
    from crypto.stream import manifest_of, seal_chunks

    chunks = seal_chunks(bytes(32), bytes(16), [os.urandom(size)], chunk_size=CS)
    return manifest_of(chunks, chunk_size=CS)


# --- upload and download through the real server app ---------------------------------------------


@pytest.fixture
def fs_env(tmp_path: Path) -> Iterator[AttachEnv]:
    yield from attach_env(tmp_path, FilesystemBlobStore(tmp_path / "server-blobs"))


def attach(env: AttachEnv, tmp_path: Path, size: int, name: str = "photo.jpg") -> tuple:
    field = env.org.add_device(Role.FIELD)
    profile = make_profile(tmp_path / f"home-{secrets.token_hex(3)}", env.org.path)
    data = os.urandom(size)
    (tmp_path / name).write_bytes(data)
    entry = seal_for_report(profile, tmp_path / name, chunk_size=CS)
    return field, profile, data, entry


def test_upload_then_download_round_trip(fs_env: AttachEnv, tmp_path: Path) -> None:
    field, profile, data, entry = attach(fs_env, tmp_path, 20 * CS + 3)
    [pending] = pending_uploads(profile.store)
    summary = upload_pending(profile, transport_for(fs_env, field.key), quiet=True)
    assert summary == {"attachments_uploaded": 1, "attachments_pending": 0}
    # Purged after the server confirmed the whole: no record, no sealed copy.
    assert pending_uploads(profile.store) == []
    assert not (profile.home / SEALED_DIR / pending.sealed_file).exists()
    out = tmp_path / "out" / "photo.jpg"
    out.parent.mkdir()
    coordinator = transport_for(fs_env, fs_env.org.coordinator)
    assert download_attachment(coordinator, fs_env.org.path, entry, out, quiet=True) == len(data)
    assert out.read_bytes() == data
    # A second sync has nothing to send.
    again = upload_pending(profile, transport_for(fs_env, field.key), quiet=True)
    assert again["attachments_uploaded"] == 0


class DyingClient(httpx2.Client):
    """The device loses power after ``budget`` chunk uploads (every later request fails)."""

    def __init__(self, inner: httpx2.Client, budget: int) -> None:
        super().__init__()
        self.inner, self.budget, self.puts = inner, budget, 0
        self.lock = threading.Lock()

    def send(self, request: httpx2.Request, **kw: Any) -> httpx2.Response:  # type: ignore[override]
        if request.method == "PUT":
            with self.lock:  # uploads run on several threads
                if self.puts >= self.budget:
                    raise httpx2.ConnectError("power lost")
                self.puts += 1
        return self.inner.send(request, **kw)


def test_resume_after_the_client_dies_sends_only_what_is_missing(
    fs_env: AttachEnv, tmp_path: Path
) -> None:
    field, profile, data, entry = attach(fs_env, tmp_path, 30 * CS)
    m = entry.transfer.manifest
    dying = DyingClient(fs_env.client, budget=11)
    with pytest.raises(NetworkError):
        upload_pending(profile, transport_for(fs_env, field.key, dying), quiet=True)
    assert len(pending_uploads(profile.store)) == 1  # still queued, sealed copy kept
    status = fs_env.json(
        "GET", f"/attachments/{b64encode(entry.attachment_id)}", None, field.key
    ).json()
    assert status["state"] == "pending" and len(status["received"]) == 11

    counting = DyingClient(fs_env.client, budget=10**6)
    upload_pending(profile, transport_for(fs_env, field.key, counting), quiet=True)
    assert counting.puts == m.chunk_count - 11  # resumed: nothing sent twice
    store = fs_env.service.store
    assert isinstance(store, FilesystemBlobStore)
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == m.chunk_count
    out = tmp_path / "got.bin"
    download_attachment(
        transport_for(fs_env, fs_env.org.coordinator), fs_env.org.path, entry, out, quiet=True
    )
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


# --- a hostile server: every tampering fails the download -----------------------------------------


class Tampering(httpx2.BaseTransport):
    """Sits between the coordinator and the real server and rewrites chunk downloads."""

    def __init__(self, inner: Any, rewrite: Callable[[int, Callable[[int], bytes]], bytes]) -> None:
        self.inner, self.rewrite = inner, rewrite

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if request.method == "GET" and "/chunks/" in path:
            index = int(path.rsplit("/", 1)[1])

            def fetch(i: int) -> bytes:
                url = request.url.copy_with(path=path.rsplit("/", 1)[0] + f"/{i}")
                r = self.inner.handle_request(httpx2.Request("GET", url, headers=request.headers))
                r.read()
                return r.content

            body = self.rewrite(index, fetch)
            return httpx2.Response(200, content=body)
        return self.inner.handle_request(request)


def flip(data: bytes, at: int = 3) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


TAMPERINGS: dict[str, Callable[..., bytes]] = {
    "reorder": lambda i, get, last: get(1 if i == 0 else 0 if i == 1 else i),
    "duplicate": lambda i, get, last: get(0) if i == 1 else get(i),
    "drop_last": lambda i, get, last: get(i) if i < last else b"",
    "append": lambda i, get, last: get(i) + (get(0) if i == last else b""),
    "flip_bit": lambda i, get, last: flip(get(i)) if i == 2 else get(i),
    "truncate_chunk": lambda i, get, last: get(i)[:-1] if i == last else get(i),
}


@pytest.mark.parametrize("how", [*TAMPERINGS, "splice"])
def test_every_tampering_fails_and_leaves_nothing(  # PROTOCOL §13.6
    fs_env: AttachEnv, tmp_path: Path, how: str
) -> None:
    field, profile, data, entry = attach(fs_env, tmp_path, 6 * CS + 9, name="testimony.ogg")
    upload_pending(profile, transport_for(fs_env, field.key), quiet=True)
    last = entry.transfer.manifest.chunk_count - 1
    if how == "splice":
        # Another attachment of the same size, uploaded by the same device.
        _, other_profile, _, other = attach(fs_env, tmp_path, 6 * CS + 9, name="other.ogg")
        upload_pending(other_profile, transport_for(fs_env, field.key), quiet=True)
        other_base = f"{fs_env.org.path}/attachments/{b64encode(other.attachment_id)}"

        def rewrite(i: int, get: Callable[[int], bytes]) -> bytes:
            if i != 2:
                return get(i)
            r = transport_for(fs_env, fs_env.org.coordinator)
            return r.send(Request("GET", f"{other_base}/chunks/2")).content
    else:

        def rewrite(i: int, get: Callable[[int], bytes]) -> bytes:
            return TAMPERINGS[how](i, get, last)

    hostile = httpx2.Client(
        transport=Tampering(fs_env.client._transport, rewrite), base_url="http://testserver"
    )
    out = tmp_path / "out" / "testimony.ogg"
    out.parent.mkdir()
    with pytest.raises(AttachmentFailed, match="testimony.ogg"):
        download_attachment(
            transport_for(fs_env, fs_env.org.coordinator, hostile),
            fs_env.org.path,
            entry,
            out,
            quiet=True,
        )
    assert list(out.parent.iterdir()) == []  # no partial output, no temporary file


def test_stream_level_tampering_is_caught_without_a_manifest(tmp_path: Path) -> None:
    """§13.2 holds even before the manifest check: STREAM alone catches each tampering."""
    data = os.urandom(5 * CS)
    (tmp_path / "f").write_bytes(data)
    entry, pending = seal_file(tmp_path / "f", tmp_path / "s", chunk_size=CS)
    raw = (tmp_path / "s" / pending.sealed_file).read_bytes()
    n = entry.transfer.manifest.chunk_count
    chunks = [raw[chunk_offset(i, CS) : chunk_offset(i + 1, CS)] for i in range(n)]
    entry2, pending2 = seal_file(tmp_path / "f", tmp_path / "s", chunk_size=CS)
    raw2 = (tmp_path / "s" / pending2.sealed_file).read_bytes()
    other = [raw2[chunk_offset(i, CS) : chunk_offset(i + 1, CS)] for i in range(n)]
    variants = {
        "reorder": [chunks[1], chunks[0], *chunks[2:]],
        "duplicate": [chunks[0], chunks[0], *chunks[2:]],
        "drop_last": chunks[:-1],
        "append": [*chunks, chunks[-1]],
        "splice": [*chunks[:2], other[2], *chunks[3:]],
        "flip": [flip(chunks[0]), *chunks[1:]],
    }
    key = entry.transfer.key
    for name, variant in variants.items():
        with pytest.raises(VerificationFailed):
            b"".join(open_chunks(key, entry.attachment_id, variant, chunk_size=CS)), name


def test_pending_attachment_is_reported_as_pending(fs_env: AttachEnv, tmp_path: Path) -> None:
    field, profile, data, entry = attach(fs_env, tmp_path, 4 * CS, name="scan.pdf")
    dying = DyingClient(fs_env.client, budget=1)
    with pytest.raises(NetworkError):
        upload_pending(profile, transport_for(fs_env, field.key, dying), quiet=True)
    out = tmp_path / "scan.pdf.out"
    with pytest.raises(AttachmentFailed, match=r"scan\.pdf.*pending"):
        download_attachment(
            transport_for(fs_env, fs_env.org.coordinator), fs_env.org.path, entry, out, quiet=True
        )
    assert not out.exists()


def test_attach_refuses_a_missing_file(tmp_path: Path) -> None:
    profile = make_profile(tmp_path / "home", "/v1/orgs/x")
    with pytest.raises(AttachmentFailed, match="nope.jpg"):
        seal_for_report(profile, tmp_path / "nope.jpg")
    assert profile.store.items(PENDING_KIND) == []
    assert AttachmentManifest  # the report entry type the CLI writes


def test_coordinator_keeps_upload_states_for_offline_display(
    fs_env: AttachEnv, tmp_path: Path
) -> None:
    """A coordinator's sync records which attachments are complete and which are pending,
    page by page, so `reports show` can say so without the network."""
    from clients.reference_cli.attachments import attachment_state, refresh_attachment_states

    field, profile, _, done = attach(fs_env, tmp_path, 3 * CS, name="a.jpg")
    upload_pending(profile, transport_for(fs_env, field.key), quiet=True)
    entries = []
    for n in range(3):
        _, p, _, e = attach(fs_env, tmp_path, 2 * CS, name=f"p{n}.jpg")
        dying = DyingClient(fs_env.client, budget=1)
        with pytest.raises(NetworkError):
            upload_pending(p, transport_for(fs_env, field.key, dying), quiet=True)
        entries.append(e)
    coordinator = make_profile(tmp_path / "coord-home", fs_env.org.path)
    seen = refresh_attachment_states(
        coordinator, transport_for(fs_env, fs_env.org.coordinator), page_size=2
    )
    assert seen == 4  # two pages
    assert attachment_state(coordinator, done.attachment_id)["state"] == "complete"
    for e in entries:
        state = attachment_state(coordinator, e.attachment_id)
        one_chunk = {e.transfer.chunk_length(i) for i in range(e.transfer.manifest.chunk_count)}
        assert state["state"] == "pending" and state["received_bytes"] in one_chunk
    unknown = attachment_state(coordinator, secrets.token_bytes(16))
    assert unknown["state"] == "pending"
    # A field device may not list the organisation's uploads: nothing is recorded.
    assert refresh_attachment_states(profile, transport_for(fs_env, field.key)) == 0


class LosingStore(FilesystemBlobStore):
    """A disk that acknowledges the first write of chunk 1 and then loses it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lost = False

    def put(self, key: Any, data: bytes) -> bool:
        created = super().put(key, data)
        if key.index == 1 and not self.lost:
            self.lost = True
            self.delete(key)
        return created


def test_chunks_the_server_lost_are_sent_again_before_complete(tmp_path: Path) -> None:
    """§13.4.5: complete re-reads every chunk; one the store lost is reported missing, and
    the client sends it again in the same sync."""
    store = LosingStore(tmp_path / "server-blobs")
    for env in attach_env(tmp_path, store):
        field, profile, data, entry = attach(env, tmp_path, 5 * CS)
        upload_pending(profile, transport_for(env, field.key), quiet=True)
        assert store.lost and pending_uploads(profile.store) == []
        out = tmp_path / "back.jpg"
        download_attachment(
            transport_for(env, env.org.coordinator), env.org.path, entry, out, quiet=True
        )
        assert out.read_bytes() == data
