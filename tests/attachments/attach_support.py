"""Helpers for the attachment tests (a uniquely named module: `conftest` is ambiguous).

An ASGI app with the attachment routes over a migrated SQLite database, signed raw and JSON
requests, and S3 helpers for moto's server mode.
"""

from __future__ import annotations

import secrets
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_api import ADMIN_TOKEN, Api, Org, create_org  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from crypto import SigningKey  # noqa: E402
from server import migrate  # noqa: E402
from server.app import create_app  # noqa: E402
from server.attachments import AttachmentService, AttachmentSettings  # noqa: E402
from server.blobstore import BlobStore, S3BlobStore  # noqa: E402
from server.db import make_engine  # noqa: E402
from server.settings import Settings  # noqa: E402
from sync.auth import sign_request  # noqa: E402
from sync.messages import b64encode  # noqa: E402

S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_all_bytes(store: S3BlobStore) -> list[tuple[str, bytes]]:
    """Every object the server wrote to the bucket, with its bytes (for canary scans)."""
    out = []
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket):
        for item in page.get("Contents", []):
            body = store.client.get_object(Bucket=store.bucket, Key=item["Key"])["Body"]
            out.append((item["Key"], body.read()))
    return out


def with_attachment_routes(app: Any) -> Any:
    """Include the attachment router unless the app factory already does."""
    from server import routes_attachments

    router = routes_attachments.router
    included = any(
        getattr(r, "original_router", None) is router or "/attachments" in getattr(r, "path", "")
        for r in app.routes
    )
    if not included:
        app.include_router(routes_attachments.router)
    return app


@dataclass
class AttachEnv:
    client: TestClient
    api: Api
    org: Org
    service: AttachmentService
    engine: Any

    def raw(
        self,
        method: str,
        path: str,
        data: bytes | None,
        key: SigningKey | None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.api.base_url + self.org.path + path
        all_headers = {"content-type": "application/octet-stream"} if data is not None else {}
        if key is not None:
            all_headers.update(
                sign_request(
                    method=method,
                    url=url,
                    body=data or None,
                    key=key,
                    created=int(time.time()),
                    nonce=secrets.token_urlsafe(16),
                )
            )
        all_headers.update(headers or {})
        return self.client.request(method, self.org.path + path, content=data, headers=all_headers)

    def json(self, method: str, path: str, body: Any, key: SigningKey) -> Any:
        return self.api.call(method, self.org.path + path, body, key=key)


def attach_env(
    tmp_path: Path,
    store: BlobStore,
    settings: AttachmentSettings | None = None,
    engine: Any = None,
) -> Iterator[AttachEnv]:
    """An app over ``engine`` (default: SQLite under tmp_path), migrated, with one org."""
    if engine is None:
        engine = make_engine(f"sqlite:///{tmp_path / 'sealbox.db'}")
    migrate.upgrade(engine)
    app = with_attachment_routes(
        create_app(Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN), engine=engine)
    )
    service = AttachmentService(settings or AttachmentSettings(), store)
    app.state.attachments = service
    with TestClient(app) as client:
        api = Api(client)
        yield AttachEnv(client, api, create_org(api), service, engine)
    engine.dispose()


def b64(data: bytes) -> str:
    return b64encode(data)
