import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATUS_UNSPECIFIED: _ClassVar[DeviceStatus]
    DEVICE_STATUS_CONNECTED: _ClassVar[DeviceStatus]
    DEVICE_STATUS_DISCONNECTED: _ClassVar[DeviceStatus]
DEVICE_STATUS_UNSPECIFIED: DeviceStatus
DEVICE_STATUS_CONNECTED: DeviceStatus
DEVICE_STATUS_DISCONNECTED: DeviceStatus

class Device(_message.Message):
    __slots__ = ("id", "customer_id", "site_id", "manufacturer_connection_id", "manufacturer", "type", "model", "serial_number", "name", "reference_id", "tags", "status", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    customer_id: str
    site_id: str
    manufacturer_connection_id: str
    manufacturer: str
    type: str
    model: str
    serial_number: str
    name: str
    reference_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    status: DeviceStatus
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., customer_id: _Optional[str] = ..., site_id: _Optional[str] = ..., manufacturer_connection_id: _Optional[str] = ..., manufacturer: _Optional[str] = ..., type: _Optional[str] = ..., model: _Optional[str] = ..., serial_number: _Optional[str] = ..., name: _Optional[str] = ..., reference_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[DeviceStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "customer_id", "site_id", "reference_id", "tag", "manufacturer", "device_type")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    customer_id: str
    site_id: str
    reference_id: str
    tag: str
    manufacturer: str
    device_type: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., customer_id: _Optional[str] = ..., site_id: _Optional[str] = ..., reference_id: _Optional[str] = ..., tag: _Optional[str] = ..., manufacturer: _Optional[str] = ..., device_type: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    next_page_token: str
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class GetDeviceStateRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetDeviceStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: DeviceState
    def __init__(self, state: _Optional[_Union[DeviceState, _Mapping]] = ...) -> None: ...

class DeviceState(_message.Message):
    __slots__ = ("device_id", "type", "read_time", "battery", "thermostat", "vehicle", "charger", "inverter")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    BATTERY_FIELD_NUMBER: _ClassVar[int]
    THERMOSTAT_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    CHARGER_FIELD_NUMBER: _ClassVar[int]
    INVERTER_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    type: str
    read_time: _timestamp_pb2.Timestamp
    battery: BatteryState
    thermostat: ThermostatState
    vehicle: VehicleState
    charger: ChargerState
    inverter: InverterState
    def __init__(self, device_id: _Optional[str] = ..., type: _Optional[str] = ..., read_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., battery: _Optional[_Union[BatteryState, _Mapping]] = ..., thermostat: _Optional[_Union[ThermostatState, _Mapping]] = ..., vehicle: _Optional[_Union[VehicleState, _Mapping]] = ..., charger: _Optional[_Union[ChargerState, _Mapping]] = ..., inverter: _Optional[_Union[InverterState, _Mapping]] = ...) -> None: ...

class BatteryState(_message.Message):
    __slots__ = ("charge_percentage", "backup_reserve_percentage", "charging_state", "power_w")
    CHARGE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_RESERVE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    CHARGING_STATE_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    charge_percentage: float
    backup_reserve_percentage: float
    charging_state: str
    power_w: float
    def __init__(self, charge_percentage: _Optional[float] = ..., backup_reserve_percentage: _Optional[float] = ..., charging_state: _Optional[str] = ..., power_w: _Optional[float] = ...) -> None: ...

class ThermostatState(_message.Message):
    __slots__ = ("mode", "heat_setpoint_celsius", "cool_setpoint_celsius", "ambient_temperature_celsius")
    MODE_FIELD_NUMBER: _ClassVar[int]
    HEAT_SETPOINT_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    COOL_SETPOINT_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    AMBIENT_TEMPERATURE_CELSIUS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    heat_setpoint_celsius: float
    cool_setpoint_celsius: float
    ambient_temperature_celsius: float
    def __init__(self, mode: _Optional[str] = ..., heat_setpoint_celsius: _Optional[float] = ..., cool_setpoint_celsius: _Optional[float] = ..., ambient_temperature_celsius: _Optional[float] = ...) -> None: ...

class VehicleState(_message.Message):
    __slots__ = ("charge_percentage", "range_km", "plugged_in", "charging")
    CHARGE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    RANGE_KM_FIELD_NUMBER: _ClassVar[int]
    PLUGGED_IN_FIELD_NUMBER: _ClassVar[int]
    CHARGING_FIELD_NUMBER: _ClassVar[int]
    charge_percentage: float
    range_km: float
    plugged_in: bool
    charging: bool
    def __init__(self, charge_percentage: _Optional[float] = ..., range_km: _Optional[float] = ..., plugged_in: _Optional[bool] = ..., charging: _Optional[bool] = ...) -> None: ...

class ChargerState(_message.Message):
    __slots__ = ("status", "power_w", "session_energy_kwh")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    status: str
    power_w: float
    session_energy_kwh: float
    def __init__(self, status: _Optional[str] = ..., power_w: _Optional[float] = ..., session_energy_kwh: _Optional[float] = ...) -> None: ...

class InverterState(_message.Message):
    __slots__ = ("power_w", "energy_today_kwh")
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_TODAY_KWH_FIELD_NUMBER: _ClassVar[int]
    power_w: float
    energy_today_kwh: float
    def __init__(self, power_w: _Optional[float] = ..., energy_today_kwh: _Optional[float] = ...) -> None: ...

class AddDeviceTagsRequest(_message.Message):
    __slots__ = ("device_id", "tags")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class AddDeviceTagsResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class RemoveDeviceTagsRequest(_message.Message):
    __slots__ = ("device_id", "tags")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveDeviceTagsResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...
