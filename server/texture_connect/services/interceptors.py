"""Interceptors, outermost first: access log, exception to rich status, authentication."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from grpc import aio
from grpc_interceptor import AsyncServerInterceptor
from grpc_interceptor.exception_to_status import AsyncExceptionToStatusInterceptor
from grpc_interceptor.exceptions import GrpcException

from texture_connect.domain.errors import ServiceError, fail
from texture_connect.domain.keys import KeyKind, hash_key
from texture_connect.domain.records import Principal
from texture_connect.services.context import CallInfo, current_call
from texture_connect.services.status import rich_status

access_log = logging.getLogger("texture_connect.access")
error_log = logging.getLogger("texture_connect.errors")

API_KEY_METADATA = "texture-api-key"

# Methods anyone may call: health checks and reflection (for grpcurl).
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# Methods only Texture's own HTTP front end may call.
INTERNAL_PREFIXES = (
    "/texture.connect.v1.CallbackService/",
    "/texture.connect.v1.HostedFlowService/",
)
# The only method a publishable connect key may call (standard mode is checked by the
# servicer, which sees the decoded request).
CONNECT_KEY_METHODS = frozenset({"/texture.connect.v1.ConnectionService/CreateConnection"})
# What a scoped key opens: reads of its own customer's devices and records (the servicers
# confine it to that customer).
SCOPED_KEY_METHODS = frozenset(
    {
        "/texture.connect.v1.DeviceService/ListDevices",
        "/texture.connect.v1.DeviceService/GetDevice",
        "/texture.connect.v1.DeviceService/GetDeviceState",
        "/texture.connect.v1.CustomerService/GetCustomer",
        "/texture.connect.v1.CustomerService/GetSite",
    }
)


class AccessLogInterceptor(AsyncServerInterceptor):
    """One structured line per call: method, status code, duration, organization. Never
    request or response bodies, never metadata: they carry keys and personal data."""

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: aio.ServicerContext,
        method_name: str,
    ) -> Any:
        call = CallInfo(method_name)
        token = current_call.set(call)
        started = time.perf_counter()
        code = "OK"
        try:
            response = method(request_or_iterator, context)
            if hasattr(response, "__aiter__"):
                # A stream (health Watch, reflection): log when it is set up; awaiting
                # it here would break streaming.
                return response
            result = await response
            code = _code_name(context, "OK")
            return result
        except BaseException:
            code = _code_name(context, "UNKNOWN")
            raise
        finally:
            current_call.reset(token)
            principal = call.principal
            organization = principal.organization if principal else None
            access_log.info(
                json.dumps(
                    {
                        "event": "rpc",
                        "method": method_name,
                        "code": code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "org": organization.id if organization else None,
                        "key_kind": principal.key_kind.value if principal else None,
                    },
                    separators=(",", ":"),
                )
            )


def _code_name(context: aio.ServicerContext, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    return default


class RichExceptionToStatusInterceptor(AsyncExceptionToStatusInterceptor):
    """Renders ``ServiceError`` as google.rpc.Status with ErrorInfo (and BadRequest).

    The stock interceptor aborts with a code and a string, dropping details, and puts
    ``repr(exception)`` of unknown errors in the message; here unknown errors are logged
    with their traceback and answered with a fixed INTERNAL status."""

    async def handle_exception(
        self,
        ex: Exception,
        request_or_iterator: Any,
        context: aio.ServicerContext,
        method_name: str,
    ) -> NoReturn:
        if isinstance(ex, ServiceError):
            await context.abort_with_status(rich_status(ex))
        if isinstance(ex, GrpcException):
            await context.abort(ex.status_code, ex.details)
        if isinstance(ex, aio.AbortError) or context.code() not in (None, grpc.StatusCode.OK):
            raise ex
        error_log.exception("unhandled error in %s", method_name)
        await context.abort_with_status(rich_status(fail("INTERNAL")))
        raise AssertionError("unreachable")


class AuthInterceptor(AsyncServerInterceptor):
    """Authenticates ``texture-api-key`` and decides which methods the key may call."""

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[Principal | None]],
        internal_key_hash: str,
    ) -> None:
        self._lookup = lookup
        self._internal_key_hash = internal_key_hash

    async def authenticate(self, method_name: str, metadata: Any) -> Principal | None:
        if method_name.startswith(PUBLIC_PREFIXES):
            return None
        key = ""
        for entry in metadata or ():
            if entry[0] == API_KEY_METADATA:
                key = entry[1] if isinstance(entry[1], str) else ""
                break
        if not key:
            raise fail("API_KEY_MISSING")
        key_hash = hash_key(key)
        if method_name.startswith(INTERNAL_PREFIXES):
            if self._internal_key_hash and hmac.compare_digest(key_hash, self._internal_key_hash):
                return Principal(KeyKind.INTERNAL, "internal")
            raise fail("INTERNAL_CREDENTIAL_REQUIRED")
        principal = await self._lookup(key_hash)
        if principal is None:
            raise fail("API_KEY_INVALID")
        if principal.key_kind is KeyKind.CONNECT and method_name not in CONNECT_KEY_METHODS:
            raise fail("CONNECT_KEY_NOT_ALLOWED")
        if principal.key_kind is KeyKind.SCOPED and method_name not in SCOPED_KEY_METHODS:
            raise fail("SECRET_KEY_REQUIRED")
        if principal.key_kind not in (KeyKind.SECRET, KeyKind.CONNECT, KeyKind.SCOPED):
            raise fail("API_KEY_INVALID", "This kind of key cannot call this method.")
        return principal

    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: aio.ServicerContext,
        method_name: str,
    ) -> Any:
        principal = await self.authenticate(method_name, context.invocation_metadata())
        call = current_call.get(None)
        if call is not None:
            call.principal = principal
        response = method(request_or_iterator, context)
        if hasattr(response, "__aiter__"):
            return response
        return await response
