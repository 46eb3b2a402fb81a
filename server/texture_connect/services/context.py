"""Per-call facts shared between the interceptors and the servicers of one RPC.

grpc.aio runs a call's interceptors and its handler in one task, so a context variable set
by the access-log interceptor is the same object the auth interceptor fills in."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from texture_connect.domain.errors import fail
from texture_connect.domain.records import Organization, Principal


@dataclass
class CallInfo:
    method: str
    principal: Principal | None = None


current_call: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("texture_call")


def current_principal() -> Principal:
    call = current_call.get(None)
    if call is None or call.principal is None:
        raise fail("API_KEY_MISSING")
    return call.principal


def current_organization() -> Organization:
    organization = current_principal().organization
    if organization is None:
        raise fail("API_KEY_INVALID", "This method needs an organization's API key.")
    return organization
