"""Carried files in the Desk, without a browser (PROTOCOL §23): a field laptop saves its
outbox, photo included, as a file; the server is then gone; a coordinator's Desk reads the
file and shows the report and its photo with no server.  The file tells nothing readable,
a second reading takes nothing twice, a damaged file says so, a field Desk relays, and the
forms refuse what did not come from the Desk's own page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from clients.desk.app import Desk, create_app
from clients.desk.carried_pages import VERDICT_WORDS
from clients.desk.edge import Gate
from sync.carry import Status
from tests.cli.conftest import LiveServer, devices, server  # noqa: F401 - fixtures
from tests.desk.test_edge import ORIGIN, PORT, login, unlock

SAME_ORIGIN = {"Origin": ORIGIN}


@contextmanager
def desk_on(home: Path) -> Iterator[tuple[Desk, TestClient]]:
    desk = Desk(home, Gate(port=PORT), idle_seconds=600)
    client = TestClient(
        create_app(desk), base_url=ORIGIN, client=("127.0.0.1", 50000), follow_redirects=False
    )
    with client:
        login(desk, client)
        assert unlock(desk, client) == 303
        yield desk, client


def upload(desk: Desk, client: TestClient, data: bytes, **form: str):
    return client.post(
        "/carried/import",
        data={"csrf": desk.gate.csrf, **form},
        files={"file": ("sealbox-0123.carried", data, "application/octet-stream")},
        headers=SAME_ORIGIN,
    )


def test_a_carried_file_goes_from_a_field_desk_to_a_coordinator_desk_with_no_server(
    server: LiveServer,  # noqa: F811
    devices,  # noqa: F811
    tmp_path: Path,
) -> None:
    coord, field, other = devices("coord"), devices("field"), devices("other")
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    for device in (field, other):
        code = coord.run("invite", "create", "--role", "field").json["code"]
        device.run("enroll", code)
    coord.run("sync")  # admits both (roster v2, v3)
    other.run("sync")
    photo = tmp_path / "raid.jpg"
    photo.write_bytes(os.urandom(1_500_000))  # over the 1 MiB limit below
    report = field.run(
        "report", "new", "-f", "title=CANARY-raid-5521", "--attach", str(photo)
    ).json["report_id"]

    with desk_on(field.home) as (desk, client):
        page = client.get("/carried")
        assert page.status_code == 200 and "2 sealed items wait" in page.text
        assert 'href="/carried"' in page.text and "Relay a carried file" in page.text
        refused = client.post("/carried/export", data={"attachments": "on"}, headers=SAME_ORIGIN)
        assert refused.status_code in (400, 422)  # no CSRF token: nothing written
        answer = client.post(
            "/carried/export",
            data={"csrf": desk.gate.csrf, "attachments": "on"},
            headers=SAME_ORIGIN,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"].startswith('attachment; filename="sealbox-')
        carried = answer.content
        assert len(carried) == int(answer.headers["content-length"])
        small = client.post(
            "/carried/export",
            data={"csrf": desk.gate.csrf, "attachments": "on", "max_mb": "1"},
            headers=SAME_ORIGIN,
        )
        assert small.status_code == 200 and len(small.content) <= 1024 * 1024 < len(carried)
        reports_only = client.post(
            "/carried/export", data={"csrf": desk.gate.csrf}, headers=SAME_ORIGIN
        )
        assert len(reports_only.content) == len(small.content)  # the photo left out of both
        typo = client.post(
            "/carried/export", data={"csrf": desk.gate.csrf, "max_mb": "1e3"}, headers=SAME_ORIGIN
        )
        assert typo.status_code == 400 and "whole number of MiB" in typo.text
    assert b"CANARY-raid-5521" not in carried
    assert photo.read_bytes()[1000:1032] not in carried

    server.stop()  # the network is gone from here on

    with desk_on(other.home) as (desk, client):  # a field laptop relays it
        relayed = upload(desk, client, carried)
        assert relayed.status_code == 200, relayed.text
        assert "2 envelopes queued for the next sync (2 waiting in all)" in relayed.text
        assert "1 attachment in the file is not relayed" in relayed.text

    with desk_on(coord.home) as (desk, client):
        assert client.get(f"/reports/{report}").status_code == 404  # not seen yet
        empty_outbox = client.post(
            "/carried/export", data={"csrf": desk.gate.csrf}, headers=SAME_ORIGIN
        )
        assert empty_outbox.status_code == 400 and "the outbox is empty" in empty_outbox.text
        taken = upload(desk, client, carried)
        assert taken.status_code == 200, taken.text
        assert "2 envelopes taken in; 1 attachment kept." in taken.text
        assert "raid.jpg" in taken.text
        shown = client.get(f"/reports/{report}")
        assert shown.status_code == 200 and "CANARY-raid-5521" in shown.text
        assert "carried here: opens with no server" in shown.text
        assert desk.profile is not None
        [revision] = desk.profile.view().revisions(bytes.fromhex(report))
        [entry] = revision.content.attachments
        opened = client.get(f"/attachments/{report}/{entry.attachment_id.hex()}")
        assert opened.status_code == 200 and opened.content == photo.read_bytes()

        again = upload(desk, client, carried)
        assert "0 envelopes taken in; 0 attachments kept." in again.text
        assert again.text.count(">duplicate<") == 3  # both envelopes and the photo

        cut = upload(desk, client, carried[: len(carried) // 2])
        assert cut.status_code == 200 and 'id="carried-incomplete"' in cut.text
        garbage = upload(desk, client, b"not a carried file at all")
        assert garbage.status_code == 400 and "carried file" in garbage.text
        empty = upload(desk, client, b"")
        assert empty.status_code == 400
        forged = upload(desk, client, carried, csrf="wrong")
        assert forged.status_code == 400 and "CSRF" in forged.text
        foreign = client.post(
            "/carried/import",
            data={"csrf": desk.gate.csrf},
            files={"file": ("x.carried", carried, "application/octet-stream")},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403


def test_every_verdict_has_words_to_translate() -> None:
    assert set(VERDICT_WORDS) == {str(s) for s in Status}
