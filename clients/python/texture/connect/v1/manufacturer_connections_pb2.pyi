import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ManufacturerConnectionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MANUFACTURER_CONNECTION_STATUS_UNSPECIFIED: _ClassVar[ManufacturerConnectionStatus]
    MANUFACTURER_CONNECTION_STATUS_ACTIVE: _ClassVar[ManufacturerConnectionStatus]
    MANUFACTURER_CONNECTION_STATUS_NEEDS_REAUTHORIZATION: _ClassVar[ManufacturerConnectionStatus]
    MANUFACTURER_CONNECTION_STATUS_DISCONNECTED: _ClassVar[ManufacturerConnectionStatus]
MANUFACTURER_CONNECTION_STATUS_UNSPECIFIED: ManufacturerConnectionStatus
MANUFACTURER_CONNECTION_STATUS_ACTIVE: ManufacturerConnectionStatus
MANUFACTURER_CONNECTION_STATUS_NEEDS_REAUTHORIZATION: ManufacturerConnectionStatus
MANUFACTURER_CONNECTION_STATUS_DISCONNECTED: ManufacturerConnectionStatus

class ManufacturerConnection(_message.Message):
    __slots__ = ("id", "customer_id", "manufacturer", "status", "scope", "device_ids", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    customer_id: str
    manufacturer: str
    status: ManufacturerConnectionStatus
    scope: str
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., customer_id: _Optional[str] = ..., manufacturer: _Optional[str] = ..., status: _Optional[_Union[ManufacturerConnectionStatus, str]] = ..., scope: _Optional[str] = ..., device_ids: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListManufacturerConnectionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "customer_id", "manufacturer")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    customer_id: str
    manufacturer: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., customer_id: _Optional[str] = ..., manufacturer: _Optional[str] = ...) -> None: ...

class ListManufacturerConnectionsResponse(_message.Message):
    __slots__ = ("manufacturer_connections", "next_page_token")
    MANUFACTURER_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    manufacturer_connections: _containers.RepeatedCompositeFieldContainer[ManufacturerConnection]
    next_page_token: str
    def __init__(self, manufacturer_connections: _Optional[_Iterable[_Union[ManufacturerConnection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetManufacturerConnectionRequest(_message.Message):
    __slots__ = ("manufacturer_connection_id",)
    MANUFACTURER_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    manufacturer_connection_id: str
    def __init__(self, manufacturer_connection_id: _Optional[str] = ...) -> None: ...

class GetManufacturerConnectionResponse(_message.Message):
    __slots__ = ("manufacturer_connection",)
    MANUFACTURER_CONNECTION_FIELD_NUMBER: _ClassVar[int]
    manufacturer_connection: ManufacturerConnection
    def __init__(self, manufacturer_connection: _Optional[_Union[ManufacturerConnection, _Mapping]] = ...) -> None: ...

class DisconnectManufacturerConnectionRequest(_message.Message):
    __slots__ = ("manufacturer_connection_id",)
    MANUFACTURER_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    manufacturer_connection_id: str
    def __init__(self, manufacturer_connection_id: _Optional[str] = ...) -> None: ...

class DisconnectManufacturerConnectionResponse(_message.Message):
    __slots__ = ("manufacturer_connection",)
    MANUFACTURER_CONNECTION_FIELD_NUMBER: _ClassVar[int]
    manufacturer_connection: ManufacturerConnection
    def __init__(self, manufacturer_connection: _Optional[_Union[ManufacturerConnection, _Mapping]] = ...) -> None: ...

class RevokeScopedKeyRequest(_message.Message):
    __slots__ = ("scoped_key",)
    SCOPED_KEY_FIELD_NUMBER: _ClassVar[int]
    scoped_key: str
    def __init__(self, scoped_key: _Optional[str] = ...) -> None: ...

class RevokeScopedKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
