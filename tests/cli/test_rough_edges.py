"""The CLI's rough edges a new user met (issue 11), each fixed and pinned here.

wipe's questions, a missing passphrase off a terminal, refusal hints, a server URL
without a scheme, invite lifetimes, strict JSON-lines import, a field given twice,
resolving what is not in conflict, --version, plurals, no wrapping off a terminal,
and --home before the command.
"""

from __future__ import annotations

import getpass
import json
import os
import select
import subprocess
import time

import pytest

from clients.local import profile as profile_module
from clients.local.store import PassphraseUnavailable
from tests.cli.conftest import SEALBOX, Device


def _coordinator(server, devices, name: str = "coordinator") -> Device:
    coord = devices(name)
    coord.run("org", "create", "--server", server.url, "--name", "Clinic")
    return coord


def _on_a_terminal(device: Device, *args: str, answer: bytes) -> tuple[int, str]:
    """Run ``sealbox ARGS`` on a pseudo-terminal; type ``answer`` once it asks (y/N)."""
    master, slave = os.openpty()
    argv = [SEALBOX, *args, "--home", str(device.home)]
    process = subprocess.Popen(
        argv, env=device.env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    piece = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not piece:
                    break
                seen += piece
            if not answered and b"[y/N]" in seen:
                os.write(master, answer + b"\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        return process.wait(10), seen.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


# --- wipe -----------------------------------------------------------------------------------


def test_wipe_asks_on_a_terminal_yes_skips_the_question_and_panic_asks_nothing(
    shared_server, devices
) -> None:
    coord = _coordinator(shared_server, devices)
    refused = coord.run("wipe", check=False, as_json=False)
    assert refused.code == 1 and "--yes" in refused.stderr
    assert (coord.home / "keyfile").exists()

    code, text = _on_a_terminal(coord, "wipe", answer=b"n")
    assert code == 1 and "Destroy the profile" in text and "not wiped" in text
    assert (coord.home / "keyfile").exists()
    code, text = _on_a_terminal(coord, "wipe", answer=b"y")
    assert code == 0 and "Wiped in" in text
    assert not coord.home.exists()

    other = _coordinator(shared_server, devices, "other")
    assert other.run("wipe", "--yes").json["wiped"] is True
    assert not other.home.exists()
    third = _coordinator(shared_server, devices, "third")
    assert third.run("wipe", "--panic").json["wiped"] is True
    assert not third.home.exists()


def test_wipe_never_removes_a_directory_that_is_not_a_profile(tmp_path) -> None:
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "letter.txt").write_text("keep me")
    result = Device(precious, {**os.environ}).run("wipe", "--panic", check=False)
    assert result.code == 1 and "nothing was wiped" in result.stderr
    assert (precious / "letter.txt").read_text() == "keep me"


# --- passphrase -----------------------------------------------------------------------------


def test_no_passphrase_and_no_terminal_says_to_set_it(shared_server, devices) -> None:
    coord = _coordinator(shared_server, devices)
    del coord.env["SEALBOX_PASSPHRASE"]
    result = coord.run("status", check=False, as_json=False)
    assert result.code == 1
    assert "set SEALBOX_PASSPHRASE" in result.stderr and "terminal" in result.stderr
    assert "GetPassWarning" not in result.stderr and "Traceback" not in result.stderr

    # A new profile asks before it talks to the server: nothing is created anywhere.
    fresh = devices("fresh")
    fresh.env.pop("SEALBOX_PASSPHRASE")
    created = fresh.run("org", "create", "--server", shared_server.url, "--name", "x", check=False)
    assert created.code == 1 and "SEALBOX_PASSPHRASE" in created.stderr
    assert not fresh.home.exists()


def test_a_prompt_that_would_warn_getpass_is_a_clear_error_in_process(monkeypatch) -> None:
    # pytest turns warnings into errors: the GetPassWarning must never escape either way.
    monkeypatch.delenv("SEALBOX_PASSPHRASE", raising=False)
    monkeypatch.setattr(profile_module, "_has_terminal", lambda: True)
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)
    with pytest.raises(PassphraseUnavailable, match="SEALBOX_PASSPHRASE"):
        profile_module.passphrase(confirm=False)


# --- the server's answers and the options checked locally -----------------------------------


def test_a_refusal_hint_does_not_repeat_the_servers_detail(shared_server, devices) -> None:
    coord = _coordinator(shared_server, devices)
    code = coord.run("invite", "create").json["code"]
    devices("first").run("enroll", code)
    again = devices("second").run("enroll", code, check=False, as_json=False)
    assert again.code == 3
    assert "ask a coordinator for a new one" in again.stderr
    assert again.stderr.count("expired") == 1, again.stderr
    assert "the secret is wrong" not in again.stderr  # the server's own detail


def test_a_server_url_without_a_scheme_says_add_http(shared_server, devices) -> None:
    bare = shared_server.url.removeprefix("http://")
    result = devices("c").run(
        "org", "create", "--server", bare, "--name", "x", check=False, as_json=False
    )
    assert result.code == 2
    assert "add http:// or https://" in result.stderr
    assert "unreachable" not in result.stderr


def test_invite_lifetime_is_checked_locally_in_days(shared_server, devices) -> None:
    nowhere = devices("nobody")  # no profile, no server: refused before either is needed
    result = nowhere.run("invite", "create", "--expires", "1000d", check=False, as_json=False)
    assert result.code == 2
    assert "1000 days" in result.stderr and "30 days" in result.stderr
    coord = _coordinator(shared_server, devices)
    assert coord.run("invite", "create", "--expires", "30d").json["code"].startswith("sbx1:")
    assert coord.run("invite", "create", "--expires", "31d", check=False).code == 2


# --- writing reports ------------------------------------------------------------------------


BAD_LINES = [
    ('{"place": 5}', "'place' is a number"),
    ('{"place": null}', "'place' is null"),
    ('{"place": {"city": "Kyiv"}}', "'place' is an object"),
    ('{"place": ["a"]}', "'place' is a list"),
    ('{"place": true}', "'place' is a boolean"),
    ('{"place": "a", "place": "b"}', "'place' is given twice"),
    ('{"place": "a"', "not JSON"),
    ('["place"]', "expected one JSON object"),
    ("{}", "at least one field"),
    ('{" x": "y"}', "field name"),
]


def test_import_names_the_bad_line_refuses_non_text_and_seals_nothing(
    shared_server, devices, tmp_path
) -> None:
    coord = _coordinator(shared_server, devices)
    source = tmp_path / "reports.jsonl"
    before = coord.run("outbox").json["count"]
    wrong = []
    for line, says in BAD_LINES:
        source.write_text('{"place": "Depot"}\n\n' + line + "\n")
        result = coord.run("report", "import", str(source), check=False, as_json=False)
        ok = result.code == 1 and "line 3" in result.stderr and says in result.stderr
        if not ok or "nothing was sealed" not in result.stderr:
            wrong.append((line, result.code, result.stderr))
    assert wrong == []
    assert coord.run("outbox").json["count"] == before


def test_import_of_text_values_seals_one_revision_each(shared_server, devices, tmp_path) -> None:
    coord = _coordinator(shared_server, devices)
    source = tmp_path / "reports.jsonl"
    source.write_text('{"place": "5", "who": "Olena"}\n')
    result = coord.run("report", "import", str(source), as_json=False)
    assert "1 report sealed" in result.stderr
    listed = coord.run("reports", "list").json
    assert [r["fields"] for r in listed] == [{"place": "5", "who": "Olena"}]


def test_the_same_field_twice_is_refused_not_silently_one(shared_server, devices) -> None:
    coord = _coordinator(shared_server, devices)
    twice = coord.run("report", "new", "-f", "a=1", "-f", "a=2", check=False, as_json=False)
    assert twice.code == 1 and "'a' is given twice" in twice.stderr
    report = coord.run("report", "new", "-f", "a=1").json["report_id"]
    edit = coord.run("report", "edit", report, "-f", "a=2", "-f", "a!", check=False)
    assert edit.code == 1 and "given twice" in edit.stderr
    resolve = coord.run("conflicts", "resolve", report, "-f", "a=1", "-f", "a=3", check=False)
    assert resolve.code == 1 and "given twice" in resolve.stderr
    assert coord.run("reports", "show", report).json["revisions"] == 1


def test_conflicts_resolve_without_a_conflict_refuses_and_writes_nothing(
    shared_server, devices
) -> None:
    coord = _coordinator(shared_server, devices)
    report = coord.run("report", "new", "-f", "place=Market").json["report_id"]
    before = coord.run("outbox").json["count"]
    result = coord.run("conflicts", "resolve", report, "-f", "place=Depot", check=False)
    assert result.code == 1 and "no conflict" in result.stderr
    assert coord.run("outbox").json["count"] == before
    assert coord.run("reports", "show", report).json["revisions"] == 1


# --- output ---------------------------------------------------------------------------------


def test_version() -> None:
    done = subprocess.run([SEALBOX, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("sealbox ") and "protocol v1" in done.stdout


def test_counts_are_singular_for_one(shared_server, devices, tmp_path) -> None:
    coord = _coordinator(shared_server, devices)
    report = coord.run("report", "new", "-f", "place=Market").json["report_id"]
    shown = coord.run("reports", "show", report, as_json=False).stdout
    assert "(1 revision, 1 head)" in shown
    exported = coord.run("reports", "export", "-o", str(tmp_path / "x.json"), as_json=False)
    assert "1 report written" in exported.stderr


def test_output_off_a_terminal_does_not_wrap_at_80_columns(shared_server, devices) -> None:
    coord = _coordinator(shared_server, devices)
    long_value = "a long value " * 12  # 156 characters
    coord.run("report", "new", "-f", f"place={long_value}", "-f", "who=x")
    listed = coord.run("reports", "list", as_json=False).stdout
    assert any("place=" + long_value.strip() in line for line in listed.splitlines()), listed
    deep = coord.home / ("d" * 90)
    refused = Device(deep, coord.env).run("status", check=False, as_json=False)
    assert [line for line in refused.stderr.splitlines() if line.strip()] == [
        f"error: no sealbox profile in {deep} (create one with `org create` or `enroll`)"
    ]
    usage = coord.run("invite", "create", "--expires", "99d", check=False, as_json=False)
    lines = usage.stderr.splitlines()
    assert any("30 days" in line and "e.g. 24h or 7d" in line for line in lines), lines
    assert "╭" not in usage.stderr  # no box drawn at 80 columns off a terminal


def test_home_is_accepted_before_the_command(shared_server, devices) -> None:
    coord = _coordinator(shared_server, devices)
    after = coord.run("status").json
    before = coord.run("status", home_first=True).json
    assert before["device_id"] == after["device_id"]
    report = coord.run("report", "new", "-f", "x=1", home_first=True).json["report_id"]
    assert coord.run("reports", "show", report).json["report_id"] == report
    env_home = {**coord.env, "SEALBOX_HOME": str(coord.home)}
    done = subprocess.run(
        [SEALBOX, "status", "--json"], env=env_home, capture_output=True, text=True, timeout=60
    )
    assert json.loads(done.stdout)["device_id"] == after["device_id"]
