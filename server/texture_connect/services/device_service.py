"""DeviceService: the devices customers connected, their live state, their tags."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from grpc import aio

from texture.connect.v1 import devices_pb2, devices_pb2_grpc
from texture_connect.domain.catalog import DEVICE_TYPES, Catalog, Manufacturer
from texture_connect.domain.connect_request import MAX_TAG_LENGTH, MAX_TAGS
from texture_connect.domain.device_state import normalize_state
from texture_connect.domain.errors import FieldViolation, Violations, fail, invalid
from texture_connect.domain.keys import KeyKind
from texture_connect.domain.pagination import next_page_token, read_page
from texture_connect.domain.records import Device, DeviceFilter, Principal
from texture_connect.manufacturers.devices import (
    AccessTokenRejected,
    DeviceAdapter,
    DeviceApiError,
    DeviceNotFound,
    SubscriptionRequired,
)
from texture_connect.services import encode
from texture_connect.services.context import current_organization, current_principal
from texture_connect.services.token_access import TokenAccess
from texture_connect.storage import Store

_STATE_MESSAGE = {
    "battery": devices_pb2.BatteryState,
    "thermostat": devices_pb2.ThermostatState,
    "vehicle": devices_pb2.VehicleState,
    "charger": devices_pb2.ChargerState,
    "inverter": devices_pb2.InverterState,
}


def _require_id(value: str, field: str) -> None:
    if not value:
        raise invalid([FieldViolation(field, "is required")])


def visible_device(principal: Principal, device: Device | None) -> Device:
    """The device if this caller may see it. A scoped key sees only its own customer's
    devices; for anything else it gets the same PERMISSION_DENIED whether the device
    exists or not, so nothing about other devices leaks."""
    if principal.key_kind is KeyKind.SCOPED:
        if device is None or device.customer_id != principal.customer_id:
            raise fail("SCOPED_KEY_FORBIDDEN")
        return device
    if device is None:
        raise fail("DEVICE_NOT_FOUND", field="deviceId")
    return device


def _check_tags(tags: list[str]) -> tuple[str, ...]:
    violations = Violations()
    if not tags:
        violations.add("tags", "must name at least one tag")
    if len(tags) > MAX_TAGS:
        violations.add("tags", f"must have at most {MAX_TAGS} tags")
    for index, tag in enumerate(tags):
        if not tag.strip() or tag != tag.strip() or len(tag) > MAX_TAG_LENGTH:
            violations.add(
                f"tags[{index}]",
                f"must be 1 to {MAX_TAG_LENGTH} characters without surrounding whitespace",
            )
    violations.raise_if_any()
    return tuple(dict.fromkeys(tags))


class DeviceService(devices_pb2_grpc.DeviceServiceServicer):
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        tokens: TokenAccess,
        adapter_for: Callable[[Manufacturer], DeviceAdapter],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._tokens = tokens
        self._adapter_for = adapter_for
        self._clock = clock

    async def ListDevices(
        self, request: devices_pb2.ListDevicesRequest, context: aio.ServicerContext
    ) -> devices_pb2.ListDevicesResponse:
        principal = current_principal()
        organization = current_organization()
        if request.device_type and request.device_type not in DEVICE_TYPES:
            raise invalid(
                [FieldViolation("deviceType", "must be one of " + ", ".join(DEVICE_TYPES))]
            )
        customer_id = request.customer_id
        if principal.key_kind is KeyKind.SCOPED:
            if customer_id and customer_id != principal.customer_id:
                raise fail("SCOPED_KEY_FORBIDDEN")
            customer_id = principal.customer_id
        device_filter = DeviceFilter(
            customer_id=customer_id,
            site_id=request.site_id,
            reference_id=request.reference_id,
            tag=request.tag,
            manufacturer=request.manufacturer,
            device_type=request.device_type,
        )
        query = f"devices:{organization.id}:{device_filter!r}"
        page = read_page(request.page_size, request.page_token, query)
        devices = await self._store.read(
            lambda tx: tx.list_devices(
                organization.id, device_filter, limit=page.size + 1, after=page.after
            )
        )
        response = devices_pb2.ListDevicesResponse(
            devices=[encode.device(d) for d in devices[: page.size]]
        )
        if len(devices) > page.size:
            last = devices[page.size - 1]
            response.next_page_token = next_page_token(last.created_at, last.id, query)
        return response

    async def _device(self, device_id: str) -> Device:
        _require_id(device_id, "deviceId")
        principal = current_principal()
        organization = current_organization()
        device = await self._store.read(lambda tx: tx.get_device(organization.id, device_id))
        return visible_device(principal, device)

    async def GetDevice(
        self, request: devices_pb2.GetDeviceRequest, context: aio.ServicerContext
    ) -> devices_pb2.GetDeviceResponse:
        return devices_pb2.GetDeviceResponse(
            device=encode.device(await self._device(request.device_id))
        )

    async def GetDeviceState(
        self, request: devices_pb2.GetDeviceStateRequest, context: aio.ServicerContext
    ) -> devices_pb2.GetDeviceStateResponse:
        device = await self._device(request.device_id)
        if device.status != "connected":
            raise fail("CONNECTION_DISCONNECTED")
        manufacturer = self._catalog.get(device.manufacturer)
        if manufacturer is None:
            raise fail("MANUFACTURER_UNAVAILABLE")
        adapter = self._adapter_for(manufacturer)
        access, generation = await self._tokens.access_token(device.connection_id)
        try:
            try:
                state = await adapter.read_state(access, device.external_id)
            except AccessTokenRejected:
                # Revoked or expired early at the manufacturer: refresh once and retry.
                access, _ = await self._tokens.access_token(
                    device.connection_id, rejected_generation=generation
                )
                state = await adapter.read_state(access, device.external_id)
        except SubscriptionRequired:
            raise fail("SUBSCRIPTION_REQUIRED") from None
        except DeviceNotFound:
            raise fail("DEVICE_NOT_AT_MANUFACTURER") from None
        except DeviceApiError:
            raise fail("MANUFACTURER_UNAVAILABLE") from None
        message = devices_pb2.DeviceState(
            device_id=device.id, type=device.type, read_time=encode.timestamp(state.read_at)
        )
        normalized = normalize_state(device.type, state.values)
        if normalized is not None:
            # The oneof's field names are the device types.
            getattr(message, device.type).CopyFrom(_STATE_MESSAGE[device.type](**normalized))
        return devices_pb2.GetDeviceStateResponse(state=message)

    async def _retag(
        self, device_id: str, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> devices_pb2.Device:
        _require_id(device_id, "deviceId")
        principal = current_principal()
        organization = current_organization()
        if principal.key_kind is not KeyKind.SECRET:
            raise fail("SECRET_KEY_REQUIRED")
        now = self._clock()
        device = await self._store.write(
            lambda tx: tx.set_device_tags(organization.id, device_id, add, remove, now)
        )
        if device is None:
            raise fail("DEVICE_NOT_FOUND", field="deviceId")
        return encode.device(device)

    async def AddDeviceTags(
        self, request: devices_pb2.AddDeviceTagsRequest, context: aio.ServicerContext
    ) -> devices_pb2.AddDeviceTagsResponse:
        tags = _check_tags(list(request.tags))
        return devices_pb2.AddDeviceTagsResponse(
            device=await self._retag(request.device_id, tags, ())
        )

    async def RemoveDeviceTags(
        self, request: devices_pb2.RemoveDeviceTagsRequest, context: aio.ServicerContext
    ) -> devices_pb2.RemoveDeviceTagsResponse:
        tags = _check_tags(list(request.tags))
        return devices_pb2.RemoveDeviceTagsResponse(
            device=await self._retag(request.device_id, (), tags)
        )
