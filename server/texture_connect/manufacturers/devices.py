"""Device adapters: reading a customer's devices from a manufacturer's device API with the
access token of their connection.

Two adapters, chosen by the catalog's ``adapter`` value (``adapter_for``):

``sandbox``
    The built-in sandbox manufacturer at ``{sandbox_url}/{slug}/api`` (see docs-sandbox.md).

``generic_json``
    A manufacturer whose device API speaks plain JSON over HTTPS with an RFC 6750 bearer token
    (``Authorization: Bearer <access token>``):

    ``GET {device_api_url}`` lists the account's devices, either as a top-level JSON list or
    as an object ``{"devices": [...]}``. Each device is an object::

        {"id": "abc123", "type": "battery", "model": "PW-3",
         "serialNumber": "SN123", "name": "Home Battery"}

    ``id`` (a string or an integer) and ``type`` (a string) are required; ``model``,
    ``serialNumber`` (or ``serial_number``) and ``name`` are optional strings (empty when
    absent); an optional ``manufacturer`` string is kept, otherwise the catalog slug is used.

    ``GET {device_api_url}/{id}/state`` (``id`` percent-encoded) returns one device's state as
    a JSON object. Its ``readAt`` (or ``read_at``) member, an RFC 3339 timestamp, becomes
    ``DeviceState.read_at`` (the time of reading when absent; UTC when it has no offset);
    every other member is kept as-is in ``DeviceState.values``.

    An answer of HTTP 402 or 403 with the JSON body ``{"error": "subscription_required"}``
    means the account lacks the manufacturer's connected-services subscription. HTTP 401 means
    the access token was rejected (refresh it); 404 on a state means an unknown device.

Both adapters treat the device list the same way, and both read a device's type from the
device list before reading its state (a state carries no type of its own).

Errors: ``SubscriptionRequired`` and ``AccessTokenRejected`` and ``DeviceNotFound`` are
``DeviceApiError`` subclasses; anything else unexpected (network failure, HTTP 5xx, a body
that is not the JSON described above) is a plain ``DeviceApiError``. An empty list means the
account has no devices, which is not an error.

Access tokens are sent only in the Authorization header and never logged or put into an
exception message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from texture_connect.domain.catalog import Manufacturer
from texture_connect.manufacturers.tls import tls_context

__all__ = [
    "AccessTokenRejected",
    "DeviceAdapter",
    "DeviceApiError",
    "DeviceInfo",
    "DeviceNotFound",
    "DeviceState",
    "GenericJsonAdapter",
    "SandboxAdapter",
    "SubscriptionRequired",
    "adapter_for",
]


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    type: str
    manufacturer: str
    model: str
    serial_number: str
    name: str


@dataclass(frozen=True)
class DeviceState:
    device_id: str
    type: str
    values: dict[str, Any]
    read_at: datetime  # UTC


class DeviceApiError(Exception):
    """The device API failed in a way that is transient or not understood."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SubscriptionRequired(DeviceApiError):
    """The account lacks the manufacturer's connected-services subscription."""


class AccessTokenRejected(DeviceApiError):
    """HTTP 401 (RFC 6750 §3.1 invalid_token): the access token is invalid, expired or
    revoked. Refreshing it may help; if the refresh fails, the customer must re-authorize."""


class DeviceNotFound(DeviceApiError):
    """The account has no device with this id."""


class DeviceAdapter(Protocol):
    async def list_devices(self, access_token: str) -> list[DeviceInfo]:
        """The account's devices; ``[]`` means it has none (not SubscriptionRequired)."""
        ...

    async def read_state(self, access_token: str, device_id: str) -> DeviceState: ...


_SUBSCRIPTION_STATUSES = (402, 403)


class _JsonDeviceApi:
    """The JSON device API shared by the sandbox and generic_json adapters."""

    def __init__(
        self,
        manufacturer: Manufacturer,
        devices_url: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.manufacturer = manufacturer
        self.devices_url = devices_url.rstrip("/")
        self.timeout = timeout
        self._client = client
        self._clock = clock or (lambda: datetime.now(UTC))

    def state_url(self, device_id: str) -> str:
        return f"{self.devices_url}/{quote(device_id, safe='')}/state"

    async def list_devices(self, access_token: str) -> list[DeviceInfo]:
        async with self._http() as http:
            return await self._list(http, access_token)

    async def read_state(self, access_token: str, device_id: str) -> DeviceState:
        async with self._http() as http:
            devices = await self._list(http, access_token)
            device = next((d for d in devices if d.id == device_id), None)
            if device is None:
                raise DeviceNotFound(f"{self._slug}: the account has no such device")
            body = await self._get_json(
                http, self.state_url(device_id), access_token, "state", device=True
            )
        if not isinstance(body, dict):
            raise DeviceApiError(f"{self._slug}: the device state is not a JSON object")
        values = dict(body)
        raw_read_at = values.pop("readAt", None)
        snake_read_at = values.pop("read_at", None)
        return DeviceState(
            device_id=device_id,
            type=device.type,
            values=values,
            read_at=self._read_at(raw_read_at if raw_read_at is not None else snake_read_at),
        )

    # ------------------------------------------------------------------------------ internals

    @property
    def _slug(self) -> str:
        return self.manufacturer.slug

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, verify=tls_context()
        ) as http:
            yield http

    async def _get_json(
        self, http: httpx.AsyncClient, url: str, access_token: str, what: str, *, device: bool
    ) -> Any:
        """GETs ``url`` with the bearer token (RFC 6750 §2.1); ``device``: a 404 means the
        device is unknown rather than a broken API."""
        try:
            response = await http.get(
                url,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except httpx.RequestError as exc:
            raise DeviceApiError(
                f"{self._slug}: reading the {what} failed ({type(exc).__name__})"
            ) from exc
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if status in _SUBSCRIPTION_STATUSES and (
            isinstance(body, dict) and body.get("error") == "subscription_required"
        ):
            raise SubscriptionRequired(
                f"{self._slug}: the account has no connected-services subscription",
                status=status,
            )
        if status == 401:  # RFC 6750 §3.1
            raise AccessTokenRejected(
                f"{self._slug}: the device API rejected the access token", status=status
            )
        if status == 404 and device:
            raise DeviceNotFound(f"{self._slug}: the device API knows no such device", status=404)
        if not response.is_success:
            raise DeviceApiError(
                f"{self._slug}: reading the {what} failed with HTTP {status}", status=status
            )
        if body is None:
            raise DeviceApiError(f"{self._slug}: the {what} is not JSON", status=status)
        return body

    async def _list(self, http: httpx.AsyncClient, access_token: str) -> list[DeviceInfo]:
        body = await self._get_json(
            http, self.devices_url, access_token, "device list", device=False
        )
        items = body.get("devices") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise DeviceApiError(f"{self._slug}: the device list is not a JSON list")
        return [self._device(item) for item in items]

    def _device(self, item: Any) -> DeviceInfo:
        def malformed(what: str) -> DeviceApiError:
            return DeviceApiError(f"{self._slug}: a device in the list {what}")

        if not isinstance(item, dict):
            raise malformed("is not a JSON object")
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            raise malformed("has no id")
        device_type = item.get("type")
        if not isinstance(device_type, str) or not device_type:
            raise malformed("has no type")

        def text(*keys: str) -> str:
            for key in keys:
                value = item.get(key)
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise malformed(f"has a {key} that is not a string")
                return value
            return ""

        return DeviceInfo(
            id=str(raw_id),
            type=device_type,
            manufacturer=text("manufacturer") or self._slug,
            model=text("model"),
            serial_number=text("serialNumber", "serial_number"),
            name=text("name"),
        )

    def _read_at(self, value: Any) -> datetime:
        if value is None:
            return self._clock()
        if not isinstance(value, str):
            raise DeviceApiError(f"{self._slug}: the state's readAt is not a timestamp")
        try:
            moment = datetime.fromisoformat(value)  # RFC 3339, including a trailing Z
        except ValueError:
            raise DeviceApiError(
                f"{self._slug}: the state's readAt is not an RFC 3339 timestamp"
            ) from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class SandboxAdapter(_JsonDeviceApi):
    """The built-in sandbox manufacturer's device API (``{sandbox_url}/{slug}/api``)."""

    def __init__(
        self,
        manufacturer: Manufacturer,
        *,
        sandbox_url: str,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_base = f"{sandbox_url.rstrip('/')}/{manufacturer.slug}/api"
        super().__init__(
            manufacturer,
            f"{self.api_base}/devices",
            timeout=timeout,
            client=client,
            clock=clock,
        )


class GenericJsonAdapter(_JsonDeviceApi):
    """A manufacturer whose device API is described in this module's docstring, rooted at the
    catalog's ``device_api_url``."""

    def __init__(
        self,
        manufacturer: Manufacturer,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not manufacturer.device_api_url:
            raise ValueError(f"{manufacturer.slug} has no device_api_url")
        super().__init__(
            manufacturer,
            manufacturer.device_api_url,
            timeout=timeout,
            client=client,
            clock=clock,
        )


def adapter_for(
    manufacturer: Manufacturer, *, sandbox_url: str, timeout: float = 10.0
) -> DeviceAdapter:
    """The device adapter the catalog names for this manufacturer."""
    if manufacturer.adapter == "sandbox":
        return SandboxAdapter(manufacturer, sandbox_url=sandbox_url, timeout=timeout)
    if manufacturer.adapter == "generic_json":
        return GenericJsonAdapter(manufacturer, timeout=timeout)
    raise ValueError(f"{manufacturer.slug}: unknown device adapter {manufacturer.adapter!r}")
