import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from texture.connect.v1 import connection_pb2 as _connection_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlowStep(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_STEP_UNSPECIFIED: _ClassVar[FlowStep]
    FLOW_STEP_WELCOME: _ClassVar[FlowStep]
    FLOW_STEP_MANUFACTURER: _ClassVar[FlowStep]
    FLOW_STEP_CUSTOMER_INFO: _ClassVar[FlowStep]
    FLOW_STEP_AUTHORIZE: _ClassVar[FlowStep]
    FLOW_STEP_ONE_TIME_CODE: _ClassVar[FlowStep]
    FLOW_STEP_DEVICES: _ClassVar[FlowStep]
    FLOW_STEP_COMPLETED: _ClassVar[FlowStep]
    FLOW_STEP_FAILED: _ClassVar[FlowStep]
    FLOW_STEP_EXPIRED: _ClassVar[FlowStep]
FLOW_STEP_UNSPECIFIED: FlowStep
FLOW_STEP_WELCOME: FlowStep
FLOW_STEP_MANUFACTURER: FlowStep
FLOW_STEP_CUSTOMER_INFO: FlowStep
FLOW_STEP_AUTHORIZE: FlowStep
FLOW_STEP_ONE_TIME_CODE: FlowStep
FLOW_STEP_DEVICES: FlowStep
FLOW_STEP_COMPLETED: FlowStep
FLOW_STEP_FAILED: FlowStep
FLOW_STEP_EXPIRED: FlowStep

class FlowManufacturer(_message.Message):
    __slots__ = ("slug", "display_name", "device_types", "credential_sign_in")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPES_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_SIGN_IN_FIELD_NUMBER: _ClassVar[int]
    slug: str
    display_name: str
    device_types: _containers.RepeatedScalarFieldContainer[str]
    credential_sign_in: bool
    def __init__(self, slug: _Optional[str] = ..., display_name: _Optional[str] = ..., device_types: _Optional[_Iterable[str]] = ..., credential_sign_in: _Optional[bool] = ...) -> None: ...

class FlowDevice(_message.Message):
    __slots__ = ("id", "type", "name", "model")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    name: str
    model: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("link_session_id", "step", "client_name", "manufacturers", "manufacturer", "customer_info", "devices", "error", "retryable", "one_time_code_delivery", "expires_at", "redirect_url")
    LINK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURERS_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_INFO_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    ONE_TIME_CODE_DELIVERY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    link_session_id: str
    step: FlowStep
    client_name: str
    manufacturers: _containers.RepeatedCompositeFieldContainer[FlowManufacturer]
    manufacturer: str
    customer_info: _connection_pb2.CustomerInfo
    devices: _containers.RepeatedCompositeFieldContainer[FlowDevice]
    error: str
    retryable: bool
    one_time_code_delivery: str
    expires_at: _timestamp_pb2.Timestamp
    redirect_url: str
    def __init__(self, link_session_id: _Optional[str] = ..., step: _Optional[_Union[FlowStep, str]] = ..., client_name: _Optional[str] = ..., manufacturers: _Optional[_Iterable[_Union[FlowManufacturer, _Mapping]]] = ..., manufacturer: _Optional[str] = ..., customer_info: _Optional[_Union[_connection_pb2.CustomerInfo, _Mapping]] = ..., devices: _Optional[_Iterable[_Union[FlowDevice, _Mapping]]] = ..., error: _Optional[str] = ..., retryable: _Optional[bool] = ..., one_time_code_delivery: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redirect_url: _Optional[str] = ...) -> None: ...

class GetFlowRequest(_message.Message):
    __slots__ = ("link_token",)
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    def __init__(self, link_token: _Optional[str] = ...) -> None: ...

class GetFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class ContinueFlowRequest(_message.Message):
    __slots__ = ("link_token",)
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    def __init__(self, link_token: _Optional[str] = ...) -> None: ...

class ContinueFlowResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class SelectManufacturerRequest(_message.Message):
    __slots__ = ("link_token", "manufacturer")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    manufacturer: str
    def __init__(self, link_token: _Optional[str] = ..., manufacturer: _Optional[str] = ...) -> None: ...

class SelectManufacturerResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class SubmitCustomerInfoRequest(_message.Message):
    __slots__ = ("link_token", "customer_info")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_INFO_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    customer_info: _connection_pb2.CustomerInfo
    def __init__(self, link_token: _Optional[str] = ..., customer_info: _Optional[_Union[_connection_pb2.CustomerInfo, _Mapping]] = ...) -> None: ...

class SubmitCustomerInfoResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class BeginAuthorizationRequest(_message.Message):
    __slots__ = ("link_token",)
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    def __init__(self, link_token: _Optional[str] = ...) -> None: ...

class BeginAuthorizationResponse(_message.Message):
    __slots__ = ("flow", "authorization_url")
    FLOW_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_URL_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    authorization_url: str
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ..., authorization_url: _Optional[str] = ...) -> None: ...

class SubmitCredentialsRequest(_message.Message):
    __slots__ = ("link_token", "username", "password")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    username: str
    password: str
    def __init__(self, link_token: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class SubmitCredentialsResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class SubmitOneTimeCodeRequest(_message.Message):
    __slots__ = ("link_token", "code")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    code: str
    def __init__(self, link_token: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class SubmitOneTimeCodeResponse(_message.Message):
    __slots__ = ("flow",)
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flow: Flow
    def __init__(self, flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class SelectDevicesRequest(_message.Message):
    __slots__ = ("link_token", "device_ids")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, link_token: _Optional[str] = ..., device_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SelectDevicesResponse(_message.Message):
    __slots__ = ("redirect_url",)
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    redirect_url: str
    def __init__(self, redirect_url: _Optional[str] = ...) -> None: ...

class LeaveFlowRequest(_message.Message):
    __slots__ = ("link_token", "error")
    LINK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    link_token: str
    error: str
    def __init__(self, link_token: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class LeaveFlowResponse(_message.Message):
    __slots__ = ("redirect_url",)
    REDIRECT_URL_FIELD_NUMBER: _ClassVar[int]
    redirect_url: str
    def __init__(self, redirect_url: _Optional[str] = ...) -> None: ...
