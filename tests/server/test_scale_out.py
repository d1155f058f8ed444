"""Scale-out (docs/OPERATIONS.md "Several nodes"): two stateless server processes on
different ports, one PostgreSQL, one S3-compatible store (moto's server on 127.0.0.1).

Field devices push their chains to a random node for every batch, and upload an attachment
chunk by chunk to random nodes, while a coordinator pulls the changes feed through the other
node the whole time.  At the end: every acknowledged envelope is in the feed exactly once,
with the sequence number it was acknowledged with; sequence numbers are 1..N without holes
and strictly increasing across pages (never out of order); each device's envelopes come in
the order it sent them; and every attachment downloads, through the other node, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time
from pathlib import Path

import httpx2
import pytest
from live_server import LiveServer, free_port
from server_api import ADMIN_TOKEN, Api, b64, create_org
from sqlalchemy import text

from crypto import parse_envelope
from crypto.stream import manifest_of, new_attachment_key, seal_chunks
from server import migrate
from server.db import make_engine
from sync.auth import sign_request
from sync.messages import b64decode

PG_URL = os.environ.get("SEALBOX_TEST_DATABASE_URL")
DEVICES, BATCHES, PER_BATCH = 4, 15, 20


def _signed_raw(base: str, method: str, path: str, key, data: bytes | None) -> httpx2.Response:
    headers = {"content-type": "application/octet-stream"} if data is not None else {}
    headers.update(
        sign_request(
            method=method,
            url=base + path,
            body=data or None,
            key=key,
            created=int(time.time()),
            nonce=secrets.token_urlsafe(16),
        )
    )
    return httpx2.request(method, base + path, content=data, headers=headers, timeout=30)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_nodes_one_postgresql_one_s3_nothing_lost_duplicated_or_out_of_order(
    tmp_path: Path,
) -> None:
    if not PG_URL:
        pytest.skip("SEALBOX_TEST_DATABASE_URL is not set: scale-out test skipped")
    from moto.server import ThreadedMotoServer

    schema = "sbx_scale_" + secrets.token_hex(6)
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    bucket = "sealbox-" + secrets.token_hex(4)
    nodes: list[LiveServer] = []
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        env = {
            "SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN,
            "SEALBOX_DATABASE_URL": url,
            "SEALBOX_WORKERS": "2",
            "SEALBOX_BLOB_BACKEND": "s3",
            "SEALBOX_S3_BUCKET": bucket,
            "SEALBOX_S3_ENDPOINT_URL": endpoint,
            "SEALBOX_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        # Each node has its own data dir (its metrics scratch); the server key is shared:
        # every node must sign receipts with the key the organisations pin (OPERATIONS).
        key_file = tmp_path / "server_signing.key"
        env["SEALBOX_SERVER_KEY_FILE"] = str(key_file)
        nodes = [LiveServer(tmp_path / f"n{i}", tmp_path / f"n{i}.log", env=env) for i in range(2)]
        for node in nodes:
            node.start()
        bases = [n.base_url for n in nodes]
        setup = httpx2.Client(base_url=bases[0], timeout=30)
        org = create_org(Api(setup, bases[0]))
        chains = [org.add_device() for _ in range(DEVICES)]
        keys = {httpx2.get(b + "/v1/server", timeout=10).json()["server_key"] for b in bases}
        assert len(keys) == 1  # both nodes sign receipts with the key the roster pins

        acked: dict[bytes, int] = {}
        sent_order: dict[bytes, list[bytes]] = {}
        attachments: dict[bytes, tuple[bytes, list[bytes]]] = {}
        lock = threading.Lock()
        errors: list[str] = []
        done = threading.Event()
        pushes_per_node = [0, 0]
        pulled_while_pushing = [0]

        def device_loop(index: int) -> None:
            chain = chains[index]
            rng = random.Random(index)
            report = secrets.token_bytes(16)
            parent: list[bytes] = []
            order: list[bytes] = []
            with (
                httpx2.Client(base_url=bases[0], timeout=30) as c0,
                httpx2.Client(base_url=bases[1], timeout=30) as c1,
            ):
                apis = [Api(c0, bases[0]), Api(c1, bases[1])]
                for _ in range(BATCHES):
                    batch = []
                    for _ in range(PER_BATCH):
                        env_ = chain.revision(org.roster, report, parent, os.urandom(300))
                        parent = [env_.id]
                        batch.append(env_)
                    body = {"envelopes": [b64(e.to_bytes()) for e in batch]}
                    node = rng.randrange(2)
                    r = apis[node].call("POST", org.path + "/push", body, key=chain.key)
                    if r.status_code != 200:
                        errors.append(f"push {r.status_code} {r.text[:300]}")
                        return
                    with lock:
                        pushes_per_node[node] += 1
                        for e, res in zip(batch, r.json()["results"], strict=True):
                            assert res["status"] == "created", res
                            acked[e.id] = res["server_seq"]
                    order += [e.id for e in batch]
            # One attachment, chunk by chunk to random nodes, completed on a random node.
            data = os.urandom(5 * 1024 + 77)
            aid = secrets.token_bytes(16)
            chunks = list(seal_chunks(new_attachment_key(), aid, [data], chunk_size=1024))
            m = manifest_of(chunks, chunk_size=1024)
            with httpx2.Client(base_url=bases[0], timeout=30) as c0:
                api = Api(c0, bases[0])
                body = {
                    "upload_id": b64(aid),
                    "chunk_size": m.chunk_size,
                    "chunk_count": m.chunk_count,
                    "total_size": m.total_size,
                }
                r = api.call("POST", org.path + "/attachments", body, key=chain.key)
                if r.status_code not in (200, 201):
                    errors.append(f"create upload {r.status_code} {r.text[:300]}")
                    return
            for i, chunk in enumerate(chunks):
                sha = b64(hashlib.sha256(chunk).digest())
                path = f"{org.path}/attachments/{b64(aid)}/chunks/{i}?sha256={sha}"
                r = _signed_raw(rng.choice(bases), "PUT", path, chain.key, chunk)
                if r.status_code not in (200, 201):
                    errors.append(f"chunk {r.status_code} {r.text[:300]}")
                    return
            base = rng.choice(bases)
            with httpx2.Client(base_url=base, timeout=30) as client:
                body = {"chunk_count": m.chunk_count, "total_size": m.total_size}
                body["sha256"] = b64(m.sha256)
                r = Api(client, base).call(
                    "POST", f"{org.path}/attachments/{b64(aid)}/complete", body, key=chain.key
                )
                if r.status_code != 200:
                    errors.append(f"complete {r.status_code} {r.text[:300]}")
                    return
            with lock:
                sent_order[chain.device_id] = order
                attachments[aid] = (data, chunks)

        seen: dict[bytes, int] = {}
        feed_order: list[bytes] = []

        def pull_page(client: httpx2.Client, cursor: str) -> dict:
            api = Api(client, bases[1])
            r = api.call("GET", f"{org.path}/changes?cursor={cursor}", key=org.coordinator)
            assert r.status_code == 200, r.text
            return r.json()

        def coordinator_loop() -> None:
            cursor, last = "", 0
            with httpx2.Client(base_url=bases[1], timeout=30) as client:
                while True:
                    finished = done.is_set()  # read before the page: then one full drain
                    page = pull_page(client, cursor)
                    for item in page["items"]:
                        env_ = parse_envelope(b64decode(item["envelope"]))
                        seq = item["server_seq"]
                        if seq <= last:
                            errors.append(f"feed went back: {seq} after {last}")
                        last = seq
                        if env_.id in seen:
                            errors.append("an envelope was served twice")
                        seen[env_.id] = seq
                        feed_order.append(env_.id)
                        pulled_while_pushing[0] += not finished
                    cursor = page["cursor"]
                    if finished and not page["more"]:
                        return

        threads = [threading.Thread(target=device_loop, args=(i,)) for i in range(DEVICES)]
        puller = threading.Thread(target=coordinator_loop)
        puller.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        done.set()
        puller.join(300)
        assert not puller.is_alive() and not any(t.is_alive() for t in threads)
        assert not errors, errors[:5]

        assert min(pushes_per_node) > 0, pushes_per_node
        assert pulled_while_pushing[0] > 0, "the coordinator pulled nothing while devices pushed"
        total = DEVICES * BATCHES * PER_BATCH
        assert len(acked) == total
        # Every acknowledged envelope was served once, with its acknowledged seq.
        assert {k: seen[k] for k in acked} == acked
        assert sorted(seen.values()) == list(range(1, len(seen) + 1))
        # Each device's envelopes in the feed in the order it sent them.
        assert len(sent_order) == DEVICES
        for device_id, order in sent_order.items():
            mine = set(order)
            assert [e for e in feed_order if e in mine] == order, device_id.hex()
        # Attachments uploaded through both nodes download through node 1, byte for byte.
        for aid, (_, chunks) in attachments.items():
            for i, chunk in enumerate(chunks):
                path = f"{org.path}/attachments/{b64(aid)}/chunks/{i}"
                r = _signed_raw(bases[1], "GET", path, org.coordinator, None)
                assert r.status_code == 200 and r.content == chunk, r.text[:200]
        setup.close()
    finally:
        for node in nodes:
            node.stop()
        moto.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
