"""``sealbox-server``: migrate, serve, admin.

* ``sealbox-server migrate`` upgrades the database to the migration head.
* ``sealbox-server serve --host 127.0.0.1 --port 8000`` runs uvicorn with the
  access log off and proxy headers ignored (no client addresses anywhere).
* ``sealbox-server admin token`` prints a fresh admin token to put in
  ``SEALBOX_ADMIN_TOKEN``; ``admin check`` validates the configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil

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
