"""ManufacturerConnectionService: list, read and disconnect customers' grants; revoke keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from grpc import aio

from texture.connect.v1 import manufacturer_connections_pb2 as pb
from texture.connect.v1 import manufacturer_connections_pb2_grpc as pb_grpc
from texture_connect.domain.errors import FieldViolation, fail, invalid
from texture_connect.domain.keys import KeyKind, hash_key, kind_of
from texture_connect.domain.pagination import next_page_token, read_page
from texture_connect.domain.records import Device, ManufacturerConnection
from texture_connect.services import encode
from texture_connect.services.context import current_organization
from texture_connect.storage import Store, Transaction


def _device_ids(devices: list[Device]) -> list[str]:
    return [d.id for d in devices]


class ManufacturerConnectionService(pb_grpc.ManufacturerConnectionServiceServicer):
    def __init__(self, *, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    async def ListManufacturerConnections(
        self, request: pb.ListManufacturerConnectionsRequest, context: aio.ServicerContext
    ) -> pb.ListManufacturerConnectionsResponse:
        org_id = current_organization().id
        query = f"connections:{org_id}:{request.customer_id}:{request.manufacturer}"
        page = read_page(request.page_size, request.page_token, query)

        def load(tx: Transaction) -> list[tuple[ManufacturerConnection, list[Device]]]:
            connections = tx.list_connections(
                org_id,
                customer_id=request.customer_id,
                manufacturer=request.manufacturer,
                limit=page.size + 1,
                after=page.after,
            )
            return [(c, tx.devices_of_connection(org_id, c.id)) for c in connections]

        rows = await self._store.read(load)
        response = pb.ListManufacturerConnectionsResponse(
            manufacturer_connections=[
                encode.manufacturer_connection(c, _device_ids(d)) for c, d in rows[: page.size]
            ]
        )
        if len(rows) > page.size:
            last = rows[page.size - 1][0]
            response.next_page_token = next_page_token(last.created_at, last.id, query)
        return response

    async def GetManufacturerConnection(
        self, request: pb.GetManufacturerConnectionRequest, context: aio.ServicerContext
    ) -> pb.GetManufacturerConnectionResponse:
        connection_id = _required(request.manufacturer_connection_id)
        org_id = current_organization().id

        def load(tx: Transaction) -> tuple[ManufacturerConnection | None, list[Device]]:
            connection = tx.get_connection(org_id, connection_id)
            devices = tx.devices_of_connection(org_id, connection_id) if connection else []
            return connection, devices

        connection, devices = await self._store.read(load)
        if connection is None:
            raise fail("MANUFACTURER_CONNECTION_NOT_FOUND", field="manufacturerConnectionId")
        return pb.GetManufacturerConnectionResponse(
            manufacturer_connection=encode.manufacturer_connection(connection, _device_ids(devices))
        )

    async def DisconnectManufacturerConnection(
        self, request: pb.DisconnectManufacturerConnectionRequest, context: aio.ServicerContext
    ) -> pb.DisconnectManufacturerConnectionResponse:
        connection_id = _required(request.manufacturer_connection_id)
        org_id = current_organization().id
        now = self._clock()

        def disconnect(tx: Transaction) -> tuple[ManufacturerConnection | None, list[Device]]:
            connection = tx.disconnect_connection(org_id, connection_id, now)
            devices = tx.devices_of_connection(org_id, connection_id) if connection else []
            return connection, devices

        connection, devices = await self._store.write(disconnect)
        if connection is None:
            raise fail("MANUFACTURER_CONNECTION_NOT_FOUND", field="manufacturerConnectionId")
        return pb.DisconnectManufacturerConnectionResponse(
            manufacturer_connection=encode.manufacturer_connection(connection, _device_ids(devices))
        )

    async def RevokeScopedKey(
        self, request: pb.RevokeScopedKeyRequest, context: aio.ServicerContext
    ) -> pb.RevokeScopedKeyResponse:
        if kind_of(request.scoped_key) is not KeyKind.SCOPED:
            raise invalid([FieldViolation("scopedKey", "must be a scoped key (tx_scoped_…)")])
        org_id = current_organization().id
        key_hash = hash_key(request.scoped_key)
        now = self._clock()
        # Idempotent: revoking a revoked (or unknown) key of this kind succeeds quietly, so
        # the answer reveals nothing about other organizations' keys.
        await self._store.write(lambda tx: tx.revoke_scoped_key(org_id, key_hash, now))
        return pb.RevokeScopedKeyResponse()


def _required(connection_id: str) -> str:
    if not connection_id:
        raise invalid([FieldViolation("manufacturerConnectionId", "is required")])
    return connection_id
