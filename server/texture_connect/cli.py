"""The ``texture-connect`` command line.

serve | migrate | orgs create | keys create | keys revoke | links create | dev-bootstrap.
Configuration comes from the environment (see the README's table); commands that print a
key print it alone on their last line, so scripts can take ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from texture_connect import app
from texture_connect.config import ConfigError, Settings
from texture_connect.domain import ids
from texture_connect.domain.errors import ServiceError
from texture_connect.domain.keys import KeyKind, display_hint, hash_key, new_key
from texture_connect.domain.records import Organization
from texture_connect.storage import DatabaseURLError, Store, Transaction, open_store

DEV_ORG_NAME = "Development"


class CommandError(Exception):
    pass


async def _with_store(settings: Settings, *, migrated: bool = True) -> Store:
    store = open_store(settings.database_url)
    if migrated and not await store.database.is_migrated():
        await store.close()
        raise CommandError("the database is not migrated: run `texture-connect migrate` first")
    return store


async def create_organization(store: Store, name: str, headless: bool) -> Organization:
    org = Organization(ids.new_id(), name, headless)
    await store.write(lambda tx: tx.insert_organization(org, datetime.now(UTC)))
    return org


async def create_key(store: Store, org_id: str, kind: KeyKind) -> tuple[str, str]:
    """(key id, key). The key is returned once and stored only as its hash."""
    key = new_key(kind)
    key_id = "key_" + ids.new_id()

    def insert(tx: Transaction) -> None:
        if tx.get_organization(org_id) is None:
            raise CommandError(f"no organization {org_id}")
        tx.insert_api_key(
            key_id=key_id,
            org_id=org_id,
            kind=kind,
            key_hash=hash_key(key),
            hint=display_hint(key),
            now=datetime.now(UTC),
        )

    await store.write(insert)
    return key_id, key


async def _migrate(settings: Settings, _args: argparse.Namespace) -> None:
    store = open_store(settings.database_url)
    try:
        before = await store.database.current_revision()
        await store.database.migrate()
        after = await store.database.current_revision()
    finally:
        await store.close()
    print(f"migrated: {before or 'empty'} -> {after}")


async def _orgs_create(settings: Settings, args: argparse.Namespace) -> None:
    store = await _with_store(settings)
    try:
        org = await create_organization(store, args.name, args.headless)
    finally:
        await store.close()
    print(org.id)


async def _keys_create(settings: Settings, args: argparse.Namespace) -> None:
    store = await _with_store(settings)
    try:
        key_id, key = await create_key(store, args.org, KeyKind(args.kind))
    finally:
        await store.close()
    print(f"created {args.kind} key {key_id} for {args.org}; it is shown only once:")
    print(key)


async def _keys_revoke(settings: Settings, args: argparse.Namespace) -> None:
    store = await _with_store(settings)
    try:

        def revoke(tx: Transaction) -> tuple[str, bool]:
            key_id = args.key
            if not key_id.startswith("key_"):
                # A whole key was given: find it by its hash.
                key_id = tx.key_id_for_hash(hash_key(args.key)) or ""
            revoked = bool(key_id) and tx.revoke_api_key(key_id=key_id, now=datetime.now(UTC))
            return key_id, revoked

        key_id, revoked = await store.write(revoke)
    finally:
        await store.close()
    if not revoked:
        raise CommandError("no such active key")
    print(f"revoked {key_id}")


async def _links_create(settings: Settings, args: argparse.Namespace) -> None:
    """The dashboard's direct link: a standard-mode session created through the real
    gRPC API of a running server, with one of the organization's secret keys."""
    import grpc

    from texture.connect.v1 import connection_pb2, connection_pb2_grpc

    request = connection_pb2.CreateConnectionRequest(
        redirect_url=args.redirect_url,
        reference_id=args.reference_id or "",
        client_name=args.client_name or "",
        tags=args.tag or [],
    )
    request.manufacturer_filters.manufacturers.extend(args.manufacturer or [])
    async with grpc.aio.insecure_channel(args.server or settings.grpc_addr) as channel:
        stub = connection_pb2_grpc.ConnectionServiceStub(channel)
        try:
            response = await stub.CreateConnection(
                request, metadata=(("texture-api-key", args.key),), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            raise CommandError(f"{exc.code().name}: {exc.details()}") from None
    print(f"customer {response.customer_id}, session {response.link_session_id}")
    print(response.link_url)


async def _dev_bootstrap(settings: Settings, _args: argparse.Namespace) -> None:
    """`make run`'s helper: a development organization with headless enabled and one key
    of each kind. A second run reuses the organization and prints its keys again (they
    are kept in the data directory, which only development uses)."""
    keys_file = settings.data_dir / "dev-keys.json"
    store = await _with_store(settings)
    try:
        org = await store.read(lambda tx: tx.find_organization_by_name(DEV_ORG_NAME))
        saved = json.loads(keys_file.read_text()) if keys_file.exists() else {}
        if org is None or saved.get("org") != org.id:
            if org is None:
                org = await create_organization(store, DEV_ORG_NAME, headless=True)
            _, secret = await create_key(store, org.id, KeyKind.SECRET)
            _, connect = await create_key(store, org.id, KeyKind.CONNECT)
            saved = {"org": org.id, "secret": secret, "connect": connect}
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            keys_file.write_text(json.dumps(saved, indent=2) + "\n")
            keys_file.chmod(0o600)
    finally:
        await store.close()
    print(f"development organization: {saved['org']} (headless enabled)")
    print(f"  secret key:  {saved['secret']}")
    print(f"  connect key: {saved['connect']}")
    print(f"  (kept in {keys_file}; for development only)")


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    if args.sandbox:
        settings = Settings.from_env({**os.environ, "TEXTURE_SANDBOX": "1"})
    await app.serve(settings)


async def _http(settings: Settings, args: argparse.Namespace) -> None:
    if args.sandbox:
        settings = Settings.from_env({**os.environ, "TEXTURE_SANDBOX": "1"})
    await app.serve_http(settings, args.grpc or settings.grpc_addr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="texture-connect", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server (and the HTTP side)")
    serve.add_argument(
        "--sandbox", action="store_true", help="serve the sandbox manufacturer (development)"
    )
    serve.set_defaults(handler=_serve)

    http = commands.add_parser(
        "http", help="run only the HTTP side (callback shim), pointed at a gRPC server"
    )
    http.add_argument("--grpc", help="the gRPC server's address (default TEXTURE_GRPC_ADDR)")
    http.add_argument("--sandbox", action="store_true", help="serve the sandbox manufacturer")
    http.set_defaults(handler=_http)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)
    commands.add_parser(
        "dev-bootstrap", help="create (or show) the development organization and keys"
    ).set_defaults(handler=_dev_bootstrap)

    orgs = commands.add_parser("orgs", help="organizations").add_subparsers(
        dest="orgs_command", required=True
    )
    orgs_create = orgs.add_parser("create", help="create an organization; prints its id")
    orgs_create.add_argument("--name", required=True)
    orgs_create.add_argument(
        "--headless", action="store_true", help="enable Headless Connect (enterprise)"
    )
    orgs_create.set_defaults(handler=_orgs_create)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys_create = keys.add_parser("create", help="create a key; prints it once, last line")
    keys_create.add_argument("--org", required=True)
    keys_create.add_argument("--kind", required=True, choices=["secret", "connect"])
    keys_create.set_defaults(handler=_keys_create)
    keys_revoke = keys.add_parser("revoke", help="revoke a key by its id or the key itself")
    keys_revoke.add_argument("key")
    keys_revoke.set_defaults(handler=_keys_revoke)

    links = commands.add_parser("links", help="connect links").add_subparsers(
        dest="links_command", required=True
    )
    links_create = links.add_parser(
        "create", help="create a standard-mode connect link (the dashboard's direct link)"
    )
    links_create.add_argument("--key", required=True, help="a secret or connect key")
    links_create.add_argument("--redirect-url", required=True)
    links_create.add_argument("--reference-id")
    links_create.add_argument("--client-name")
    links_create.add_argument("--manufacturer", action="append")
    links_create.add_argument("--tag", action="append")
    links_create.add_argument("--server", help="gRPC address (default TEXTURE_GRPC_ADDR)")
    links_create.set_defaults(handler=_links_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
        asyncio.run(args.handler(settings, args))
    except (CommandError, ConfigError, DatabaseURLError, app.NotMigratedError, OSError) as exc:
        print(f"texture-connect: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"texture-connect: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
