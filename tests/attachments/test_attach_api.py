"""The attachment upload API through the ASGI app (PROTOCOL §13.4-§13.5), on both blob stores.

Uploads are idempotent and resumable: chunks go in any order, a repeated chunk is stored
once, the status says what the server holds, and complete checks the whole against the
manifest the uploader declares.  Every refusal is problem+json 4xx with a stable reason.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
from pathlib import Path
from typing import Any

import pytest
from attach_support import AttachEnv, attach_env, b64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.stream import Manifest, manifest_of, new_attachment_key, open_chunks, seal_chunks
from server.attachments import AttachmentSettings, expire_uploads
from server.blobstore import BlobKey, FilesystemBlobStore
from sync.messages import b64decode
from sync.roster import Role

CS = 1024  # small chunks keep the tests quick


def sealed(size: int, chunk_size: int = CS) -> tuple[bytes, bytes, bytes, list[bytes], Manifest]:
    data = os.urandom(size)
    key, aid = new_attachment_key(), secrets.token_bytes(16)
    chunks = list(seal_chunks(key, aid, [data], chunk_size=chunk_size))
    return data, key, aid, chunks, manifest_of(chunks, chunk_size=chunk_size)


def create(env: AttachEnv, device: Any, aid: bytes, m: Manifest) -> Any:
    body = {
        "upload_id": b64(aid),
        "chunk_size": m.chunk_size,
        "chunk_count": m.chunk_count,
        "total_size": m.total_size,
    }
    return env.json("POST", "/attachments", body, device.key)


def put(env: AttachEnv, device: Any, aid: bytes, index: int, chunk: bytes, digest=None) -> Any:
    sha = b64(digest if digest is not None else hashlib.sha256(chunk).digest())
    return env.raw("PUT", f"/attachments/{b64(aid)}/chunks/{index}?sha256={sha}", chunk, device.key)


def complete(env: AttachEnv, device: Any, aid: bytes, m: Manifest) -> Any:
    body = {"chunk_count": m.chunk_count, "total_size": m.total_size, "sha256": b64(m.sha256)}
    return env.json("POST", f"/attachments/{b64(aid)}/complete", body, device.key)


def assert_problem(response: Any, status: int, code: str, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    if reason is not None:
        assert body["reason"] == reason
    return body


def download(env: AttachEnv, aid: bytes, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        r = env.raw("GET", f"/attachments/{b64(aid)}/chunks/{i}", None, env.org.coordinator)
        assert r.status_code == 200, r.text
        out.append(r.content)
    return out


def test_upload_any_order_idempotent_status_complete_download(env: AttachEnv) -> None:
    """§13.4: any order, stored once, pending until complete, then coordinators download."""
    field = env.org.add_device(Role.FIELD)
    data, key, aid, chunks, m = sealed(9 * CS + 100)
    r = create(env, field, aid, m)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "pending" and r.json()["received"] == []
    assert create(env, field, aid, m).status_code == 200  # declaring again is harmless

    order = list(range(len(chunks)))
    random.Random(7).shuffle(order)
    for i in order[:5]:
        assert put(env, field, aid, i, chunks[i]).status_code == 201
    again = put(env, field, aid, order[0], chunks[order[0]])
    assert again.status_code == 200 and again.json()["status"] == "duplicate"

    status = env.json("GET", f"/attachments/{b64(aid)}", None, field.key).json()
    assert sorted(status["received"]) == sorted(order[:5])
    # A coordinator sees the attachment pending, and cannot download it yet.
    listed = env.json("GET", "/attachments?state=pending", None, env.org.coordinator).json()
    assert [u["upload_id"] for u in listed["uploads"]] == [b64(aid)]
    assert listed["uploads"][0]["state"] == "pending"
    early = env.raw("GET", f"/attachments/{b64(aid)}/chunks/0", None, env.org.coordinator)
    assert_problem(early, 409, "validation_failed", "attachment_pending")
    body = assert_problem(
        complete(env, field, aid, m), 409, "validation_failed", "upload_incomplete"
    )
    assert body["missing"] == sorted(order[5:])

    for i in order[5:]:
        assert put(env, field, aid, i, chunks[i]).status_code == 201
    done = complete(env, field, aid, m)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete" and b64decode(done.json()["sha256"]) == m.sha256
    assert complete(env, field, aid, m).status_code == 200  # idempotent

    got = download(env, aid, m.chunk_count)
    assert got == chunks
    assert b"".join(open_chunks(key, aid, got, chunk_size=CS, expected=m)) == data
    # Each chunk is stored exactly once in the blob store.
    assert list(env.service.store.uploads()) == [(env.org.org_id, aid)]
    for i, c in enumerate(chunks):
        assert env.service.store.has(BlobKey(env.org.org_id, aid, i, hashlib.sha256(c).digest()))
    if isinstance(env.service.store, FilesystemBlobStore):
        files = [p for p in env.service.store.root.rglob("*") if p.is_file()]
        assert len(files) == m.chunk_count


def test_chunk_refusals_are_problems_never_500(env: AttachEnv) -> None:
    field = env.org.add_device(Role.FIELD)
    other = env.org.add_device(Role.FIELD)
    _, _, aid, chunks, m = sealed(3 * CS)
    assert create(env, field, aid, m).status_code == 201

    flipped = bytes([chunks[0][0] ^ 1]) + chunks[0][1:]
    assert_problem(
        put(env, field, aid, 0, flipped, hashlib.sha256(chunks[0]).digest()),
        422, "validation_failed", "chunk_hash",
    )  # fmt: skip
    assert_problem(put(env, field, aid, 0, chunks[0][:-1]), 422, "validation_failed", "chunk_size")
    assert_problem(put(env, field, aid, 0, chunks[-1]), 422, "validation_failed", "chunk_size")
    assert_problem(put(env, field, aid, m.chunk_count, chunks[-1]), 422, "validation_failed")
    # Another device cannot write into (or even see) this upload.
    assert_problem(put(env, other, aid, 0, chunks[0]), 404, "not_found", "unknown_upload")
    got = env.json("GET", f"/attachments/{b64(aid)}", None, other.key)
    assert_problem(got, 404, "not_found")
    # Once stored, an index keeps its bytes.
    assert put(env, field, aid, 1, chunks[1]).status_code == 201
    assert_problem(put(env, field, aid, 1, chunks[0]), 409, "validation_failed", "chunk_conflict")
    # Unsigned and oversized requests.
    path = f"/attachments/{b64(aid)}/chunks/0?sha256={b64(hashlib.sha256(chunks[0]).digest())}"
    assert_problem(env.raw("PUT", path, chunks[0], None), 401, "unauthenticated")
    big = env.raw("PUT", path, bytes(17 * 1024 * 1024), field.key)
    assert_problem(big, 413, "payload_too_large", "too_large")
    # Field devices never download; the uploaded bytes are for coordinators.
    assert_problem(
        env.raw("GET", f"/attachments/{b64(aid)}/chunks/1", None, field.key), 403, "forbidden"
    )
    assert_problem(env.json("GET", "/attachments", None, field.key), 403, "forbidden")
    assert_problem(
        env.raw("GET", f"/attachments/{b64(secrets.token_bytes(16))}/chunks/0", None,
                env.org.coordinator), 404, "not_found", "unknown_upload",
    )  # fmt: skip
    assert_problem(
        env.raw("GET", "/attachments/notbase64!!/chunks/0", None, env.org.coordinator),
        404, "not_found",
    )  # fmt: skip


def test_create_and_complete_refusals(env: AttachEnv) -> None:
    field = env.org.add_device(Role.FIELD)
    other = env.org.add_device(Role.FIELD)
    _, _, aid, chunks, m = sealed(2 * CS + 5)
    # Geometry that no sealer produces.
    for bad in (
        Manifest(CS, m.chunk_count, m.total_size + 1, m.sha256),  # not a padding bucket
        Manifest(CS, m.chunk_count + 5, m.total_size, m.sha256),  # count does not fit size
        Manifest(0, 1, 300, m.sha256),
    ):
        r = create(env, field, secrets.token_bytes(16), bad)
        assert r.status_code == 422, r.text
    assert create(env, field, aid, m).status_code == 201
    moved = Manifest(CS, m.chunk_count + 1, m.total_size + CS + 16, m.sha256)
    assert_problem(create(env, field, aid, moved), 409, "validation_failed", "upload_conflict")
    assert_problem(create(env, other, aid, m), 409, "validation_failed", "upload_conflict")
    for i, c in enumerate(chunks):
        assert put(env, field, aid, i, c).status_code == 201
    wrong = Manifest(CS, m.chunk_count, m.total_size, hashlib.sha256(b"other").digest())
    assert_problem(complete(env, field, aid, wrong), 422, "validation_failed", "manifest_mismatch")
    assert_problem(complete(env, other, aid, m), 404, "not_found", "unknown_upload")
    assert complete(env, field, aid, m).status_code == 200
    assert_problem(complete(env, field, aid, wrong), 422, "validation_failed", "manifest_mismatch")
    too_big = Manifest(16 * 1024 * 1024, 1024, 1024 * (16 * 1024 * 1024 + 16), m.sha256)
    r = create(env, field, secrets.token_bytes(16), too_big)
    assert r.status_code in (413, 422)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_damaged_blob_is_found_at_complete_and_uploaded_again(
    tmp_path: Path,
) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    for env in attach_env(tmp_path, store):
        field = env.org.add_device(Role.FIELD)
        _, _, aid, chunks, m = sealed(3 * CS)
        assert create(env, field, aid, m).status_code == 201
        for i, c in enumerate(chunks):
            assert put(env, field, aid, i, c).status_code == 201
        # The disk flips a bit in chunk 1 behind the server's back.
        path = store._path(BlobKey(env.org.org_id, aid, 1, hashlib.sha256(chunks[1]).digest()))
        raw = bytearray(path.read_bytes())
        raw[5] ^= 0x10
        path.write_bytes(bytes(raw))
        body = assert_problem(complete(env, field, aid, m), 409, "validation_failed")
        assert body["missing"] == [1]
        assert put(env, field, aid, 1, chunks[1]).status_code == 201
        assert complete(env, field, aid, m).status_code == 200


@pytest.mark.parametrize("which", ["device", "org"])
def test_quotas_per_device_and_org(tmp_path: Path, which: str) -> None:
    _, _, _, _, m = sealed(2 * CS)
    limits = (
        {"attachment_device_quota_bytes": 2 * m.total_size + 10}
        if which == "device"
        else {"attachment_org_quota_bytes": 2 * m.total_size + 10}
    )
    store = FilesystemBlobStore(tmp_path / "blobs")
    for env in attach_env(tmp_path, store, AttachmentSettings(**limits)):
        a, b = env.org.add_device(Role.FIELD), env.org.add_device(Role.FIELD)
        assert create(env, a, secrets.token_bytes(16), m).status_code == 201
        assert create(env, a, secrets.token_bytes(16), m).status_code == 201
        body = assert_problem(
            create(env, a, secrets.token_bytes(16), m), 429, "quota_exceeded", f"{which}_quota"
        )
        assert body["retry_after"] > 0
        second = create(env, b, secrets.token_bytes(16), m)
        if which == "device":
            assert second.status_code == 201  # another device has its own quota
        else:
            assert_problem(second, 429, "quota_exceeded", "org_quota")


def test_incomplete_uploads_expire_after_the_configured_days(env: AttachEnv) -> None:
    """§13.4: pending uploads idle for SEALBOX_UPLOAD_EXPIRY_DAYS (default 30) are removed with
    their blobs; complete uploads and recently active ones stay."""
    assert env.service.settings.upload_expiry_days == 30
    field = env.org.add_device(Role.FIELD)
    _, _, idle, idle_chunks, m1 = sealed(2 * CS)
    _, _, done, done_chunks, m2 = sealed(CS)
    assert create(env, field, idle, m1).status_code == 201
    assert put(env, field, idle, 0, idle_chunks[0]).status_code == 201
    assert create(env, field, done, m2).status_code == 201
    for i, c in enumerate(done_chunks):
        put(env, field, done, i, c)
    assert complete(env, field, done, m2).status_code == 200
    # An orphan blob (its row lost in a crash) is swept too.
    orphan = secrets.token_bytes(16)
    env.service.store.put(BlobKey(env.org.org_id, orphan, 0, hashlib.sha256(b"o").digest()), b"o")

    import time

    now = int(time.time())
    kw = {"engine": env.engine, "store": env.service.store, "expiry_days": 30}
    assert expire_uploads(now=now + 29 * 86400, **kw) == 0
    assert (env.org.org_id, idle) in set(env.service.store.uploads())
    assert (env.org.org_id, orphan) not in set(env.service.store.uploads())
    assert expire_uploads(now=now + 31 * 86400, **kw) == 1
    assert set(env.service.store.uploads()) == {(env.org.org_id, done)}
    gone = env.json("GET", f"/attachments/{b64(idle)}", None, field.key)
    assert_problem(gone, 404, "not_found")
    assert env.json("GET", f"/attachments/{b64(done)}", None, field.key).status_code == 200


def test_revoked_and_unadmitted_devices_cannot_upload(env: AttachEnv) -> None:
    """§13.5.1: only devices admitted in the roster, and not revoked, create and put chunks."""
    field = env.org.add_device(Role.FIELD)
    waiting = env.org.add_device(Role.FIELD, admit=False)
    _, _, aid, chunks, m = sealed(2 * CS)
    assert create(env, field, aid, m).status_code == 201
    assert put(env, field, aid, 0, chunks[0]).status_code == 201
    assert_problem(create(env, waiting, secrets.token_bytes(16), m), 403, "forbidden")
    revoked = env.org.roster.revoke(field.device_id, after_seq=0)
    assert env.org.publish(revoked).status_code == 200
    assert_problem(put(env, field, aid, 1, chunks[1]), 403, "device_revoked")
    assert_problem(create(env, field, secrets.token_bytes(16), m), 403, "device_revoked")
    assert_problem(complete(env, field, aid, m), 403, "device_revoked")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(size=st.integers(0, 8 * CS), seed=st.integers(0, 2**32 - 1), repeats=st.integers(0, 4))
def test_any_order_with_repeats_stores_each_chunk_once_property(
    tmp_path_factory: pytest.TempPathFactory, size: int, seed: int, repeats: int
) -> None:
    """§13.4.3: whatever the order and however often a chunk is sent, it is stored once and the
    download opens to the original."""
    tmp = tmp_path_factory.mktemp("prop")
    store = FilesystemBlobStore(tmp / "blobs")
    for env in attach_env(tmp, store):
        field = env.org.add_device(Role.FIELD)
        data, key, aid, chunks, m = sealed(size)
        assert create(env, field, aid, m).status_code == 201
        rng = random.Random(seed)
        sends = list(range(m.chunk_count)) + [rng.randrange(m.chunk_count) for _ in range(repeats)]
        rng.shuffle(sends)
        seen: set[int] = set()
        for i in sends:
            r = put(env, field, aid, i, chunks[i])
            assert r.status_code == (200 if i in seen else 201)
            seen.add(i)
        assert complete(env, field, aid, m).status_code == 200
        assert len([p for p in store.root.rglob("*") if p.is_file()]) == m.chunk_count
        got = download(env, aid, m.chunk_count)
        assert b"".join(open_chunks(key, aid, got, chunk_size=CS, expected=m)) == data


def test_concurrent_puts_and_declarations_store_once(env: AttachEnv) -> None:
    """Two sessions of one device (a retry racing the original) never store a chunk twice."""
    from concurrent.futures import ThreadPoolExecutor

    field = env.org.add_device(Role.FIELD)
    _, _, aid, chunks, m = sealed(4 * CS)
    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(lambda _: create(env, field, aid, m).status_code, range(4)))
        assert sorted(created) == [200, 200, 200, 201]
        codes = list(pool.map(lambda _: put(env, field, aid, 2, chunks[2]).status_code, range(6)))
    assert sorted(codes) == [200] * 5 + [201]
    status = env.json("GET", f"/attachments/{b64(aid)}", None, field.key).json()
    assert status["received"] == [2]
    assert len([k for k in env.service.store.uploads()]) == 1
