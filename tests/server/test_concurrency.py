"""Concurrent pushes and a concurrent feed reader (§7.7, §9.1), on SQLite and PostgreSQL.

Several devices push at once while a coordinator follows the feed with its cursor.
Because sequence numbers are taken under the per-organisation lock inside the write
transaction, they commit in order: the reader, which only ever asks for
``server_seq > cursor``, must see every envelope exactly once, and the numbers must
be 1..N without gaps.
"""

from __future__ import annotations

import secrets
import threading

from server_api import Api, create_org
from sqlalchemy import Engine
from starlette.testclient import TestClient

from crypto import parse_envelope
from sync.messages import b64decode


def test_a_following_reader_never_skips_a_row_that_commits_late(
    client: TestClient, engine: Engine
) -> None:
    org = create_org(Api(client))
    devices = [org.add_device() for _ in range(4)]
    batches = []
    for dev in devices:
        for _ in range(30):
            dev.revision(org.roster, secrets.token_bytes(16), [], b"c")
        batches.append([dev.sent[i : i + 5] for i in range(0, len(dev.sent), 5)])
    expected = {e.id for dev in devices for e in dev.sent}
    done = threading.Event()
    seen: list[bytes] = []
    errors: list[str] = []

    def pusher(index: int) -> None:
        dev = devices[index]
        for batch in batches[index]:
            r = org.push(dev, batch)
            if r.status_code != 200:
                errors.append(r.text)

    def reader() -> None:
        cursor = ""
        while True:
            finished = done.is_set()
            page = org.changes(cursor, limit=7).json()
            seen.extend(parse_envelope(b64decode(i["envelope"])).id for i in page["items"])
            cursor = page["cursor"]
            if finished and not page["more"]:
                return

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(len(devices))]
    follower = threading.Thread(target=reader)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(60)
    assert not errors
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    seqs = [i["server_seq"] for i in org.changes(limit=1000).json()["items"]]
    assert seqs == list(range(1, len(expected) + 1))
