"""The wiring: config → storage → adapters → services → servers. The CLI calls this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from starlette.applications import Starlette

from texture.connect.v1 import (
    callback_pb2,
    callback_pb2_grpc,
    connection_pb2,
    connection_pb2_grpc,
    customers_pb2,
    customers_pb2_grpc,
    devices_pb2,
    devices_pb2_grpc,
    hosted_flow_pb2,
    hosted_flow_pb2_grpc,
    manufacturer_connections_pb2,
    manufacturer_connections_pb2_grpc,
)
from texture_connect.config import ConfigError, Settings
from texture_connect.crypto import Sealer, development_key, read_or_create_secret
from texture_connect.domain.catalog import Catalog, Manufacturer
from texture_connect.domain.keys import KeyKind, hash_key, new_key
from texture_connect.domain.records import Principal
from texture_connect.http.app import create_http_app
from texture_connect.http.sandbox import create_sandbox_app
from texture_connect.manufacturers.catalog_file import load_catalog
from texture_connect.manufacturers.devices import DeviceAdapter, adapter_for
from texture_connect.services.callback_service import CallbackService, CallbackSettings
from texture_connect.services.connecting import Connector
from texture_connect.services.connection_service import ConnectionService, ConnectionSettings
from texture_connect.services.customer_service import CustomerService
from texture_connect.services.device_service import DeviceService
from texture_connect.services.hosted_flow_service import HostedFlowService
from texture_connect.services.interceptors import (
    AccessLogInterceptor,
    AuthInterceptor,
    RichExceptionToStatusInterceptor,
)
from texture_connect.services.manufacturer_connection_service import (
    ManufacturerConnectionService,
)
from texture_connect.services.token_access import TokenAccess
from texture_connect.storage import Store, open_store

log = logging.getLogger("texture_connect")

SERVICE_NAMES = tuple(
    service.full_name
    for module in (
        connection_pb2,
        callback_pb2,
        devices_pb2,
        customers_pb2,
        manufacturer_connections_pb2,
        hosted_flow_pb2,
    )
    for service in module.DESCRIPTOR.services_by_name.values()
)


class NotMigratedError(RuntimeError):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


def internal_key(settings: Settings) -> str:
    """The credential the HTTP front end presents to CallbackService: the configured one,
    else one generated once into the data directory (development)."""
    if settings.internal_key:
        return settings.internal_key
    return read_or_create_secret(
        settings.data_dir / "internal.key", lambda: new_key(KeyKind.INTERNAL)
    )


def sealer_for(settings: Settings) -> Sealer:
    return Sealer.from_setting(settings.encryption_key or development_key(Path(settings.data_dir)))


def catalog_for(settings: Settings) -> Catalog:
    return load_catalog(settings.manufacturers_file, sandbox_url=settings.sandbox_url)


@dataclass
class GrpcApp:
    server: aio.Server
    port: int
    health: health.aio.HealthServicer

    async def stop(self, grace: float = 5.0) -> None:
        # NOT_SERVING first, so load balancers stop sending new calls during the grace.
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def create_grpc_server(
    *,
    store: Store,
    catalog: Catalog,
    sealer: Sealer,
    settings: Settings,
    address: str = "127.0.0.1:0",
    internal_key_value: str = "",
    clock: Callable[[], datetime] = utc_now,
) -> GrpcApp:
    """Builds and starts the gRPC server; returns it with its bound port (port 0 picks a
    free one, as tests do)."""

    async def lookup(key_hash: str) -> Principal | None:
        return await store.read(lambda tx: tx.principal_for_key_hash(key_hash))

    server = aio.server(
        interceptors=[
            AccessLogInterceptor(),
            RichExceptionToStatusInterceptor(),
            AuthInterceptor(lookup, hash_key(internal_key_value) if internal_key_value else ""),
        ],
        options=[("grpc.so_reuseport", 0)],
    )
    connection_pb2_grpc.add_ConnectionServiceServicer_to_server(
        ConnectionService(
            store=store,
            catalog=catalog,
            sealer=sealer,
            settings=ConnectionSettings(
                public_url=settings.public_url,
                callback_url=settings.callback_url,
                session_ttl=timedelta(seconds=settings.session_ttl_seconds),
            ),
            clock=clock,
        ),
        server,
    )

    secret_names = {
        settings_table.client_secret_env
        for m in catalog.manufacturers.values()
        for settings_table in (m.oauth, m.credentials)
        if settings_table is not None
    }

    def adapters(manufacturer: Manufacturer) -> DeviceAdapter:
        return adapter_for(manufacturer, sandbox_url=settings.sandbox_url)

    connector = Connector(
        store=store,
        sealer=sealer,
        public_url=settings.public_url,
        adapter_for=adapters,
        clock=clock,
    )
    callback_pb2_grpc.add_CallbackServiceServicer_to_server(
        CallbackService(
            store=store,
            catalog=catalog,
            sealer=sealer,
            settings=CallbackSettings(
                callback_url=settings.callback_url,
                secrets_env=settings.manufacturer_secrets(secret_names),
            ),
            connector=connector,
            clock=clock,
        ),
        server,
    )
    tokens = TokenAccess(
        store=store,
        sealer=sealer,
        catalog=catalog,
        secrets_env=settings.manufacturer_secrets(secret_names),
        clock=clock,
    )
    devices_pb2_grpc.add_DeviceServiceServicer_to_server(
        DeviceService(
            store=store, catalog=catalog, tokens=tokens, adapter_for=adapters, clock=clock
        ),
        server,
    )
    customers_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerService(store=store), server)
    hosted_flow_pb2_grpc.add_HostedFlowServiceServicer_to_server(
        HostedFlowService(
            store=store,
            catalog=catalog,
            sealer=sealer,
            connector=connector,
            callback_url=settings.callback_url,
            secrets_env=settings.manufacturer_secrets(secret_names),
            clock=clock,
        ),
        server,
    )
    manufacturer_connections_pb2_grpc.add_ManufacturerConnectionServiceServicer_to_server(
        ManufacturerConnectionService(store=store, clock=clock), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return GrpcApp(server, port, health_servicer)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our event loop: signals are ours, so both servers stop in order."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def build_http_app(settings: Settings, grpc_target: str, internal_key_value: str) -> Starlette:
    sandbox = None
    if settings.sandbox_enabled:
        sandbox = create_sandbox_app(
            base_url=settings.sandbox_url,
            clients={"texture-dev": settings.sandbox_client_secret},
            access_token_ttl=settings.sandbox_token_ttl,
        )
    return create_http_app(
        grpc_target=grpc_target, internal_key=internal_key_value, sandbox=sandbox
    )


def http_server(settings: Settings, app: Starlette) -> _EmbeddedUvicorn:
    host, _, port = settings.http_addr.rpartition(":")
    config = uvicorn.Config(
        app,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,  # query strings carry codes and states
        lifespan="on",
    )
    return _EmbeddedUvicorn(config)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> None:
    """Runs gRPC and the HTTP side until SIGTERM or SIGINT, then drains: health
    NOT_SERVING, HTTP stops accepting, then gRPC stops gracefully."""
    store = open_store(settings.database_url)
    try:
        if not await store.database.is_migrated():
            raise NotMigratedError(
                "the database is not migrated to the current schema: "
                "run `texture-connect migrate` first"
            )
        credential = internal_key(settings)
        grpc_app = await create_grpc_server(
            store=store,
            catalog=catalog_for(settings),
            sealer=sealer_for(settings),
            settings=settings,
            address=settings.grpc_addr,
            internal_key_value=credential,
        )
        http = http_server(settings, build_http_app(settings, settings.grpc_addr, credential))
        http_task = asyncio.create_task(http.serve())
        ready_task = asyncio.create_task(http.ready.wait())
        await asyncio.wait({http_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        if not http.started:
            ready_task.cancel()
            await grpc_app.stop(grace=0)
            raise OSError(f"cannot serve HTTP on {settings.http_addr}")
        sandbox_note = f"; sandbox manufacturer at {settings.sandbox_url}"
        print(
            f"texture-connect: gRPC on {settings.grpc_addr}, HTTP on {settings.http_addr}"
            f"{sandbox_note if settings.sandbox_enabled else ''}",
            flush=True,
        )
        signal_task = asyncio.create_task(_wait_for_signal())
        await signal_task
        log.info("shutting down")
        await grpc_app.health.enter_graceful_shutdown()
        http.should_exit = True
        await http_task
        await grpc_app.stop()
    finally:
        await store.close()


async def serve_http(settings: Settings, grpc_target: str) -> None:
    """The HTTP side alone, pointed at a gRPC server elsewhere (it holds no state, so any
    number of these can run behind a load balancer)."""
    if not settings.internal_key and not (settings.data_dir / "internal.key").exists():
        # A credential made up here would not be the gRPC server's: every callback would
        # fail. Say so at start instead.
        raise ConfigError(
            "set TEXTURE_INTERNAL_KEY to the gRPC server's internal credential "
            f"(or share its data directory, {settings.data_dir})"
        )
    http = http_server(settings, build_http_app(settings, grpc_target, internal_key(settings)))
    http_task = asyncio.create_task(http.serve())
    ready_task = asyncio.create_task(http.ready.wait())
    await asyncio.wait({http_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
    if not http.started:
        ready_task.cancel()
        raise OSError(f"cannot serve HTTP on {settings.http_addr}")
    print(f"texture-connect: HTTP on {settings.http_addr}, gRPC at {grpc_target}", flush=True)
    signal_task = asyncio.create_task(_wait_for_signal())
    await asyncio.wait({http_task, signal_task}, return_when=asyncio.FIRST_COMPLETED)
    http.should_exit = True
    await http_task
