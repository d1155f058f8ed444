"""``sealbox-server``: migrate, serve, admin.

* ``sealbox-server migrate`` upgrades the database to the migration head.
* ``sealbox-server serve --host 127.0.0.1 --port 8000`` runs uvicorn with the
  access log off and proxy headers ignored (no client addresses anywhere).
* ``sealbox-server backup --to FILE`` copies the database while it serves;
  ``restore --from FILE`` puts a SQLite backup back (server stopped).
* ``sealbox-server admin token`` prints a fresh admin token to put in
  ``SEALBOX_ADMIN_TOKEN``; ``admin check`` validates the configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from server.settings import ADMIN_TOKEN_HINT, Settings, get_settings

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sealbox sync server.")
admin_app = typer.Typer(no_args_is_help=True, help="Operator helpers.")
app.add_typer(admin_app, name="admin")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"configuration error: {error['msg']}", err=True)
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic, same revisions on SQLite and PostgreSQL)."""
    from server import migrate as migrations
    from server.db import engine_for

    settings = _settings()
    engine = engine_for(settings)
    try:
        migrations.upgrade(engine)
        typer.echo(f"database at revision {migrations.current_revision(engine)}")
    finally:
        engine.dispose()


def _require_schema_at_head(settings: Settings) -> None:
    """Refuse to serve a database whose schema is not the head (or migrate it first when
    SEALBOX_MIGRATE_ON_START is set): a server on a missing or older schema would answer
    its first requests with 500s.  Exit 3: schema; 4: database unreachable."""
    from sqlalchemy.exc import SQLAlchemyError

    from server import migrate as migrations
    from server.db import engine_for

    engine = engine_for(settings)
    try:
        try:
            state = migrations.schema_state(engine)
            if state.behind and settings.migrate_on_start:
                typer.echo("SEALBOX_MIGRATE_ON_START: migrating the database first", err=True)
                migrations.upgrade(engine)
                state = migrations.schema_state(engine)
        except SQLAlchemyError as exc:
            typer.echo(
                f"error: the database is unreachable ({type(exc).__name__}); check "
                "SEALBOX_DATABASE_URL and that the database server is up",
                err=True,
            )
            raise typer.Exit(4) from None
    finally:
        engine.dispose()
    if state.problem is not None:
        typer.echo(
            f"error: not serving: {state.problem} (or set SEALBOX_MIGRATE_ON_START=1 to "
            "migrate at start)",
            err=True,
        )
        raise typer.Exit(3)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind (0: any free port)."),
    workers: int | None = typer.Option(
        None, min=1, help="uvicorn worker processes (default: SEALBOX_WORKERS, 2)."
    ),
) -> None:
    """Serve the API with uvicorn (access log off, proxy headers off)."""
    import uvicorn

    from server.edge import uvicorn_options
    from server.logging import configure_logging
    from server.settings import load_or_create_server_key

    settings = _settings()
    configure_logging(settings.log_level)
    _require_schema_at_head(settings)
    if settings.admin_token is None:
        typer.echo(
            f"note: SEALBOX_ADMIN_TOKEN is not set, so organisations cannot be created; "
            f"{ADMIN_TOKEN_HINT}",
            err=True,
        )
    # Create the key once, before any worker starts.
    load_or_create_server_key(settings.resolved_server_key_file)
    workers = workers or settings.workers
    if workers > 1:
        # prometheus_client's multiprocess mode: each worker writes its own files,
        # /metrics sums them. The directory must be fresh for every start.
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700, parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    uvicorn.run(
        "server.asgi:app",
        factory=False,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=True,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings),  # header limits and timeouts (server/edge.py)
    )


def _sqlite_path(settings: Settings) -> Path:
    from sqlalchemy.engine import make_url

    database = make_url(settings.resolved_database_url).database
    if not database or database == ":memory:":
        typer.echo("error: the SQLite database is in memory; nothing to back up", err=True)
        raise typer.Exit(2)
    return Path(database)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="File to write (written aside, then renamed).")],
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
) -> None:
    """Copy the database to FILE, consistent while the server runs.

    SQLite: SQLite's online backup API in one read transaction (writers carry on), then
    an integrity check of the copy. PostgreSQL: ``pg_dump --format=custom`` when it is
    installed, else what to run. Back up the server key file too (it never changes).
    """
    settings = _settings()
    if to.exists() and not force:
        typer.echo(f"error: {to} exists; pass --force to replace it", err=True)
        raise typer.Exit(2)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(f".{to.name}.{os.getpid()}.partial")
    tmp.unlink(missing_ok=True)
    try:
        if settings.is_sqlite:
            _backup_sqlite(_sqlite_path(settings), tmp)
        else:
            _backup_postgresql(settings.resolved_database_url, tmp)
        os.replace(tmp, to)
        _fsync_dir(to.parent)
    finally:
        tmp.unlink(missing_ok=True)
    typer.echo(f"backup written to {to} ({to.stat().st_size} bytes)")
    typer.echo(
        f"also keep a copy of the server key {settings.resolved_server_key_file} "
        "(it signs receipts; it does not change between backups)"
    )


def _backup_sqlite(source: Path, target: Path) -> None:
    import sqlite3

    if not source.exists():
        typer.echo(f"error: no database at {source}", err=True)
        raise typer.Exit(2)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # pages=-1: every page in one step, so in one read transaction of the source: a
        # consistent snapshot that writers (WAL) never wait for. A step-wise copy would
        # restart whenever another process writes.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        check = dst.execute("PRAGMA quick_check").fetchone()
    finally:
        dst.close()
        src.close()
    if check is None or check[0] != "ok":
        typer.echo("error: the copy failed its integrity check; nothing written", err=True)
        raise typer.Exit(1)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _libpq_env(url: str) -> dict[str, str]:
    """The libpq environment for ``url``: the password never goes on a command line."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for var, value in (
        ("PGHOST", u.host),
        ("PGPORT", str(u.port) if u.port else None),
        ("PGUSER", u.username),
        ("PGPASSWORD", u.password),
        ("PGDATABASE", u.database),
    ):
        if value:
            env[var] = str(value)
    options = u.query.get("options")
    if isinstance(options, str):
        env["PGOPTIONS"] = unquote(options)
    return env


def _backup_postgresql(url: str, target: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        typer.echo(
            "error: pg_dump is not installed here. Back up PostgreSQL with the tools of its "
            "own host, for example:\n"
            "  pg_dump --format=custom --file=sealbox.dump <database>\n"
            "and restore with pg_restore --clean --if-exists --dbname=<database> sealbox.dump",
            err=True,
        )
        raise typer.Exit(1)
    import subprocess

    done = subprocess.run(
        # Rate-limit counters (UNLOGGED) are scratch: left out of the dump.
        [pg_dump, "--format=custom", "--no-owner", "--no-unlogged-table-data", f"--file={target}"],
        env=_libpq_env(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        typer.echo(f"error: pg_dump failed:\n{done.stderr.strip()}", err=True)
        raise typer.Exit(1)
    os.chmod(target, 0o600)


def _processes_using(database: Path) -> list[int]:
    """Other processes with the SQLite database (or its WAL) open, from /proc (Linux; else
    none are found). A server that has answered a request keeps its connections open."""
    names = {str(Path(f"{database}{suffix}").resolve()) for suffix in ("", "-wal", "-shm")}
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in names:
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return sorted(found)


@app.command()
def restore(
    from_: Annotated[
        Path, typer.Option("--from", help="A file written by `sealbox-server backup`.")
    ],
) -> None:
    """Replace the SQLite database with a backup. Stop the server first.

    The copy goes through SQLite's backup API into the live file, so a write-ahead log
    left by the replaced database is never replayed onto the restored one (which a
    plain ``cp`` over ``sealbox.db`` risks). Clients then find the server went back in
    time and repair (PROTOCOL §15.6). PostgreSQL: use ``pg_restore``.
    """
    import sqlite3

    settings = _settings()
    if not settings.is_sqlite:
        typer.echo(
            "error: restore is for SQLite; for PostgreSQL stop the servers and run "
            "pg_restore --clean --if-exists --dbname=<database> FILE",
            err=True,
        )
        raise typer.Exit(2)
    if not from_.is_file():
        typer.echo(f"error: no backup at {from_}", err=True)
        raise typer.Exit(2)
    src = sqlite3.connect(f"file:{from_}?mode=ro", uri=True)
    try:
        try:
            check = src.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError:  # not a database, or damaged beyond quick_check
            check = None
        if check is None or check[0] != "ok":
            typer.echo(f"error: {from_} fails its integrity check; nothing restored", err=True)
            raise typer.Exit(1)
        target = _sqlite_path(settings)
        users = _processes_using(target)
        if users:
            typer.echo(
                f"error: process {', '.join(map(str, users))} has {target} open: stop the "
                "server first (it caches the database epoch); nothing restored",
                err=True,
            )
            raise typer.Exit(2)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
    finally:
        src.close()
    typer.echo(
        f"restored {target} from {from_}; start the server (clients will see it went back "
        "in time and re-push what they hold)"
    )


@admin_app.command("token")
def admin_token() -> None:
    """Print a fresh random admin token (set it as SEALBOX_ADMIN_TOKEN)."""
    typer.echo(secrets.token_urlsafe(32))


@admin_app.command("check")
def admin_check() -> None:
    """Validate the configuration and say what is missing."""
    settings = _settings()
    typer.echo(f"database: {'sqlite' if settings.is_sqlite else 'postgresql'}")
    typer.echo(f"data dir: {settings.data_dir}")
    if settings.admin_token is None:
        typer.echo(f"admin token: NOT SET; {ADMIN_TOKEN_HINT}")
    else:
        typer.echo("admin token: set")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="sealbox-server")


if __name__ == "__main__":  # pragma: no cover
    main()
