"""Records to protobuf messages, shared by the servicers."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from texture.connect.v1 import (
    connection_pb2,
    customers_pb2,
    devices_pb2,
    manufacturer_connections_pb2,
)
from texture_connect.domain.records import (
    ConnectionStatus,
    Customer,
    Device,
    ManufacturerConnection,
    Site,
)

_DEVICE_STATUS = {
    "connected": devices_pb2.DEVICE_STATUS_CONNECTED,
    "disconnected": devices_pb2.DEVICE_STATUS_DISCONNECTED,
}
_CONNECTION_STATUS = {
    ConnectionStatus.ACTIVE: manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_ACTIVE,
    ConnectionStatus.NEEDS_REAUTHORIZATION: (
        manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_NEEDS_REAUTHORIZATION
    ),
    ConnectionStatus.DISCONNECTED: (
        manufacturer_connections_pb2.MANUFACTURER_CONNECTION_STATUS_DISCONNECTED
    ),
}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def device(record: Device) -> devices_pb2.Device:
    return devices_pb2.Device(
        id=record.id,
        customer_id=record.customer_id,
        site_id=record.site_id,
        manufacturer_connection_id=record.connection_id,
        manufacturer=record.manufacturer,
        type=record.type,
        model=record.model,
        serial_number=record.serial_number,
        name=record.name,
        reference_id=record.reference_id,
        tags=record.tags,
        status=_DEVICE_STATUS.get(record.status, devices_pb2.DEVICE_STATUS_UNSPECIFIED),
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


def site(record: Site, device_ids: list[str]) -> customers_pb2.Site:
    a = record.address
    message = customers_pb2.Site(
        id=record.id,
        customer_id=record.customer_id,
        location=connection_pb2.Location(
            street_one=a.street_one,
            street_two=a.street_two,
            city=a.city,
            state=a.state,
            postal_code=a.postal_code,
            country=a.country,
        ),
        device_ids=device_ids,
    )
    if record.created_at is not None:
        message.create_time.CopyFrom(timestamp(record.created_at))
    return message


def customer(record: Customer, sites: list[Site], devices: list[Device]) -> customers_pb2.Customer:
    message = customers_pb2.Customer(
        id=record.id,
        reference_id=record.reference_id,
        first_name=record.first_name,
        last_name=record.last_name,
        email=record.email,
        phone=record.phone,
        sites=[site(s, [d.id for d in devices if d.site_id == s.id]) for s in sites],
        devices=[device(d) for d in devices],
    )
    if record.created_at is not None:
        message.create_time.CopyFrom(timestamp(record.created_at))
    if record.updated_at is not None:
        message.update_time.CopyFrom(timestamp(record.updated_at))
    return message


def manufacturer_connection(
    record: ManufacturerConnection, device_ids: list[str]
) -> manufacturer_connections_pb2.ManufacturerConnection:
    return manufacturer_connections_pb2.ManufacturerConnection(
        id=record.id,
        customer_id=record.customer_id,
        manufacturer=record.manufacturer,
        status=_CONNECTION_STATUS[record.status],
        scope=record.scope,
        device_ids=device_ids,
        create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )
