import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECT_MODE_UNSPECIFIED: _ClassVar[ConnectMode]
    CONNECT_MODE_STANDARD: _ClassVar[ConnectMode]
    CONNECT_MODE_HEADLESS: _ClassVar[ConnectMode]

class AuthorizationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORIZATION_TYPE_UNSPECIFIED: _ClassVar[AuthorizationType]
    AUTHORIZATION_TYPE_OAUTH_REDIRECT: _ClassVar[AuthorizationType]

class ConnectSessionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECT_SESSION_STATUS_UNSPECIFIED: _ClassVar[ConnectSessionStatus]
    CONNECT_SESSION_STATUS_PENDING: _ClassVar[ConnectSessionStatus]
    CONNECT_SESSION_STATUS_COMPLETED: _ClassVar[ConnectSessionStatus]
    CONNECT_SESSION_STATUS_FAILED: _ClassVar[ConnectSessionStatus]
    CONNECT_SESSION_STATUS_EXPIRED: _ClassVar[ConnectSessionStatus]
CONNECT_MODE_UNSPECIFIED: ConnectMode
CONNECT_MODE_STANDARD: ConnectMode
CONNECT_MODE_HEADLESS: ConnectMode
AUTHORIZATION_TYPE_UNSPECIFIED: AuthorizationType
AUTHORIZATION_TYPE_OAUTH_REDIRECT: AuthorizationType
CONNECT_SESSION_STATUS_UNSPECIFIED: ConnectSessionStatus
CONNECT_SESSION_STATUS_PENDING: ConnectSessionStatus
CONNECT_SESSION_STATUS_COMPLETED: ConnectSessionStatus
CONNECT_SESSION_STATUS_FAILED: ConnectSessionStatus
CONNECT_SESSION_STATUS_EXPIRED: ConnectSessionStatus

class CreateConnectionRequest(_message.Message):
    __slots__ = ("redirect_url", "reference_id", "tags", "client_name", "customer_id", "site_id", "mode", "manufacturer_filters", "customer_info", "request_id")
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FILTERS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_INFO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    redirect_url: str
    reference_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    client_name: str
    customer_id: str
    site_id: str
    mode: ConnectMode
    manufacturer_filters: ManufacturerFilters
    customer_info: CustomerInfo
    request_id: str
    def __init__(self, redirect_url: _Optional[str] = ..., reference_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., client_name: _Optional[str] = ..., customer_id: _Optional[str] = ..., site_id: _Optional[str] = ..., mode: _Optional[_Union[ConnectMode, str]] = ..., manufacturer_filters: _Optional[_Union[ManufacturerFilters, _Mapping]] = ..., customer_info: _Optional[_Union[CustomerInfo, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ManufacturerFilters(_message.Message):
    __slots__ = ("manufacturers", "device_types")
    MANUFACTURERS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPES_FIELD_NUMBER: _ClassVar[int]
    manufacturers: _containers.RepeatedScalarFieldContainer[str]
    device_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, manufacturers: _Optional[_Iterable[str]] = ..., device_types: _Optional[_Iterable[str]] = ...) -> None: ...

class CustomerInfo(_message.Message):
    __slots__ = ("first_name", "last_name", "email", "phone", "location")
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    first_name: str
    last_name: str
    email: str
    phone: str
    location: Location
    def __init__(self, first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., email: _Optional[str] = ..., phone: _Optional[str] = ..., location: _Optional[_Union[Location, _Mapping]] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("street_one", "street_two", "city", "state", "postal_code", "country")
    STREET_ONE_FIELD_NUMBER: _ClassVar[int]
    STREET_TWO_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POSTAL_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    street_one: str
    street_two: str
    city: str
    state: str
    postal_code: str
    country: str
    def __init__(self, street_one: _Optional[str] = ..., street_two: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., postal_code: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class Authorization(_message.Message):
    __slots__ = ("type", "url")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    type: AuthorizationType
    url: str
    def __init__(self, type: _Optional[_Union[AuthorizationType, str]] = ..., url: _Optional[str] = ...) -> None: ...

class CreateConnectionResponse(_message.Message):
    __slots__ = ("customer_id", "link_url", "link_token", "link_session_id", "expires_at", "site_id", "authorization")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_URL_FIELD_NUMBER: _ClassVar[int]
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LINK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    link_url: str
    link_token: str
    link_session_id: str
    expires_at: _timestamp_pb2.Timestamp
    site_id: str
    authorization: Authorization
    def __init__(self, customer_id: _Optional[str] = ..., link_url: _Optional[str] = ..., link_token: _Optional[str] = ..., link_session_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., site_id: _Optional[str] = ..., authorization: _Optional[_Union[Authorization, _Mapping]] = ...) -> None: ...

class GetConnectionRequest(_message.Message):
    __slots__ = ("link_session_id",)
    LINK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    link_session_id: str
    def __init__(self, link_session_id: _Optional[str] = ...) -> None: ...

class GetConnectionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ConnectSession
    def __init__(self, session: _Optional[_Union[ConnectSession, _Mapping]] = ...) -> None: ...

class ConnectSession(_message.Message):
    __slots__ = ("link_session_id", "status", "mode", "customer_id", "site_id", "reference_id", "tags", "client_name", "redirect_url", "manufacturer_filters", "customer_form_bypassed", "create_time", "expires_at", "end_time", "error")
    LINK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FILTERS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FORM_BYPASSED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    link_session_id: str
    status: ConnectSessionStatus
    mode: ConnectMode
    customer_id: str
    site_id: str
    reference_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    client_name: str
    redirect_url: str
    manufacturer_filters: ManufacturerFilters
    customer_form_bypassed: bool
    create_time: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, link_session_id: _Optional[str] = ..., status: _Optional[_Union[ConnectSessionStatus, str]] = ..., mode: _Optional[_Union[ConnectMode, str]] = ..., customer_id: _Optional[str] = ..., site_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., client_name: _Optional[str] = ..., redirect_url: _Optional[str] = ..., manufacturer_filters: _Optional[_Union[ManufacturerFilters, _Mapping]] = ..., customer_form_bypassed: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class StartAuthorizationRequest(_message.Message):
    __slots__ = ("link_session_id", "manufacturer")
    LINK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    link_session_id: str
    manufacturer: str
    def __init__(self, link_session_id: _Optional[str] = ..., manufacturer: _Optional[str] = ...) -> None: ...

class StartAuthorizationResponse(_message.Message):
    __slots__ = ("authorization",)
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    authorization: Authorization
    def __init__(self, authorization: _Optional[_Union[Authorization, _Mapping]] = ...) -> None: ...
