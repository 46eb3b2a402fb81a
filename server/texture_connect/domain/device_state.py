"""Live device state in one normalized shape per device type.

Manufacturers report state in their own shapes; these functions map the fields we know
(the sandbox's and the generic adapter's camelCase names, and common snake_case spellings)
onto the API's. A field the manufacturer did not report stays at its zero value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Normalized field -> the names manufacturers use for it, in order of preference.
STATE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "battery": {
        "charge_percentage": ("chargePercentage", "charge_percentage", "soc"),
        "backup_reserve_percentage": ("backupReserve", "backup_reserve", "backupReservePercentage"),
        "charging_state": ("chargingState", "charging_state", "state"),
        "power_w": ("powerW", "power_w", "power"),
    },
    "thermostat": {
        "mode": ("mode", "hvacMode"),
        "heat_setpoint_celsius": ("heatSetpoint", "heat_setpoint", "heatSetpointCelsius"),
        "cool_setpoint_celsius": ("coolSetpoint", "cool_setpoint", "coolSetpointCelsius"),
        "ambient_temperature_celsius": (
            "ambientTemperature",
            "ambient_temperature",
            "indoorTemperature",
        ),
    },
    "vehicle": {
        "charge_percentage": ("chargePercentage", "charge_percentage", "batteryLevel"),
        "range_km": ("rangeKm", "range_km"),
        "plugged_in": ("pluggedIn", "plugged_in"),
        "charging": ("charging", "isCharging"),
    },
    "charger": {
        "status": ("status", "state"),
        "power_w": ("powerW", "power_w", "power"),
        "session_energy_kwh": ("sessionEnergyKwh", "session_energy_kwh"),
    },
    "inverter": {
        "power_w": ("powerW", "power_w", "power"),
        "energy_today_kwh": ("energyTodayKwh", "energy_today_kwh"),
    },
}
_TEXT_FIELDS = {"charging_state", "mode", "status"}
_FLAG_FIELDS = {"plugged_in", "charging"}
_TEMPERATURE_FIELDS = {
    "heat_setpoint_celsius",
    "cool_setpoint_celsius",
    "ambient_temperature_celsius",
}


def _fahrenheit_to_celsius(value: float) -> float:
    return round((value - 32) * 5 / 9, 2)


def _coerce(name: str, value: Any, unit: str) -> Any:
    """The API's type for a field; a value that does not fit is left out (None)."""
    if name in _TEXT_FIELDS:
        return str(value)
    if name in _FLAG_FIELDS:
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if name in _TEMPERATURE_FIELDS and unit in ("f", "fahrenheit"):
        return _fahrenheit_to_celsius(number)
    return number


def normalize_state(device_type: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The normalized fields for ``device_type``; None for a type with no state shape."""
    fields = STATE_FIELDS.get(device_type)
    if fields is None:
        return None
    fahrenheit = str(values.get("temperatureUnit", values.get("temperature_unit", ""))).lower()
    normalized: dict[str, Any] = {}
    for name, spellings in fields.items():
        for spelling in spellings:
            if spelling in values and values[spelling] is not None:
                normalized[name] = _coerce(name, values[spelling], fahrenheit)
                break
    return {k: v for k, v in normalized.items() if v is not None}
