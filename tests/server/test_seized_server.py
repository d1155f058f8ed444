"""A seized server learns nothing (BRIEF S1/S2; docs/PROTOCOL.md §7.6, §11.3).

A whole flow runs against a real ``sealbox-server`` process: reports whose
plaintext (titles, places, names, free text) and device labels carry canary
strings are sealed, pushed, pulled and graphed.  Then every byte the server
wrote (database, WAL, shared memory, key file, lock file, and its captured
logs) is scanned: no canary, in any of the encodings tried, may appear.  The
same run's logs must hold no client address, user agent, token or signature.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import httpx2
import pytest
from live_server import LiveServer
from server_api import ADMIN_TOKEN, Api, b64, create_org

CANARIES = [
    "CANARY-TITLE-Massacre-at-7f3a9",
    "CANARY-PLACE-Village-of-Qx81",
    "CANARY-NAME-Witness-Amina-K2",
    "CANARY-TEXT-soldiers-entered-at-dawn",
]
LABEL_CANARY = "CANARY-LABEL-Aminas-phone"
USER_AGENT = "CanaryAgent/9.9 (seized-server-test)"


def _encodings(text: str) -> list[bytes]:
    raw = text.encode()
    return [
        raw,
        text.encode("utf-16-le"),
        raw.hex().encode(),
        base64.b64encode(raw)[:-4],
        base64.urlsafe_b64encode(raw).rstrip(b"=")[:-4],
    ]


@pytest.fixture
def seized(tmp_path: Path):
    data = tmp_path / "data"
    server = LiveServer(data, tmp_path / "server.log", env={"SEALBOX_ADMIN_TOKEN": ADMIN_TOKEN})
    server.migrate()
    server.start()
    client = httpx2.Client(base_url=server.base_url, headers={"user-agent": USER_AGENT}, timeout=30)
    try:
        api = Api(client, server.base_url)
        org = create_org(api)
        dev = org.add_device(label=LABEL_CANARY)
        report = secrets.token_bytes(16)
        content = json.dumps({"title": CANARIES[0], "place": CANARIES[1], "names": [CANARIES[2]]})
        first = dev.revision(org.roster, report, [], content.encode())
        second = dev.revision(org.roster, report, [first.id], (content + CANARIES[3]).encode())
        r = org.push(dev, dev.sent)
        assert [x["status"] for x in r.json()["results"]] == ["created"] * 3
        assert len(org.changes().json()["items"]) == 3
        graph = org.as_coordinator("GET", f"/reports/{b64(report)}").json()
        assert graph["heads"] == [b64(second.id)]
        assert org.api.call("GET", org.path + "/receipts", key=dev.key).status_code == 200
        assert org.as_coordinator("GET", "/devices").status_code == 200
        client.get("/v1/orgs/nope/changes")  # an error path too
        client.post(org.path + "/push", content=b"{not json")
    finally:
        client.close()
        server.kill()  # SIGKILL: the WAL and shared-memory files stay as they were
    server.stored_body = second.body  # type: ignore[attr-defined]
    return server


def test_no_canary_in_any_byte_the_server_wrote(seized: LiveServer) -> None:
    files = [p for p in seized.data_dir.rglob("*") if p.is_file()] + [seized.log_path]
    assert any(p.name.endswith(".db") for p in files)
    # Control: the scan does see what the server stored (the sealed body is there).
    everything = b"".join(p.read_bytes() for p in files)
    assert seized.stored_body in everything  # type: ignore[attr-defined]
    hits = []
    for path in files:
        data = path.read_bytes()
        for canary in [*CANARIES, LABEL_CANARY]:
            for needle in _encodings(canary):
                if needle in data:
                    hits.append((path.name, canary))
    assert hits == []


def test_logs_hold_no_addresses_agents_tokens_or_signatures(seized: LiveServer) -> None:
    log = seized.log_path.read_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert any('"server_started"' in line for line in lines)
    for line in lines:
        if line.startswith("{"):
            json.loads(line)
    for needle in (
        "127.0.0.1",
        "localhost",
        USER_AGENT,
        "CanaryAgent",
        ADMIN_TOKEN,
        "sig1",
        "sbx=",
        "Bearer",
    ):
        assert needle not in log, needle
