"""The Texture-hosted Connect pages at ``link_url`` (standard mode).

Server-rendered (Jinja2, autoescaped) pages over ``HostedFlowService``: the HTTP side keeps
no state of its own. Every form carries a CSRF token bound to the link (an HMAC under the
front end's internal credential), so a page of another site cannot drive a customer's flow.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from texture.connect.v1 import connection_pb2, hosted_flow_pb2, hosted_flow_pb2_grpc

log = logging.getLogger("texture_connect.http.hosted")

LINK_TOKEN = re.compile(r"^link_[0-9a-f]{32}$")
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Pages may open in a popup (the SDKs do) but never inside another site's frame.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
}
# What each texture_error means to the customer, and whether "Try again" is offered.
ERROR_PAGES: dict[str, tuple[str, str]] = {
    "connection_failed": (
        "We couldn't finish connecting",
        "You signed in, but we couldn't reach your devices. This is usually temporary.",
    ),
    "server_error": (
        "The manufacturer had a problem",
        "The manufacturer's sign-in service ran into an error. Trying again often works.",
    ),
    "temporarily_unavailable": (
        "The manufacturer is busy",
        "The manufacturer's sign-in service is temporarily unavailable. Please try again "
        "in a moment.",
    ),
    "access_denied": (
        "Access was not allowed",
        "Access to your devices was declined, so nothing was connected.",
    ),
    "device_incompatible": (
        "No compatible devices",
        "We didn't find a device on this account that can be connected.",
    ),
    "subscription_required": (
        "A subscription is needed",
        "Your manufacturer account needs an active connected-services subscription before "
        "devices can be connected.",
    ),
    "oauth_state_mismatch": (
        "That sign-in didn't match",
        "The sign-in that came back doesn't belong to this connection, so we ignored it. "
        "Start the sign-in again from this page.",
    ),
    "connect_session_already_completed": (
        "Already done",
        "This sign-in was already used.",
    ),
    "connect_session_expired": (
        "This link has expired",
        "For your security, connection links only work for a limited time. Please start "
        "again from the app you came from.",
    ),
    "unknown_error": (
        "Something went wrong",
        "The manufacturer reported a problem we don't recognise.",
    ),
}
STEP = hosted_flow_pb2


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    fields: dict[str, str] = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                fields.setdefault(violation.field, violation.description)
    return fields


def _error_info_has(error: grpc.aio.AioRpcError, key: str) -> bool:
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return key in info.metadata
    return False


class HostedPages:
    def __init__(
        self,
        stub: Callable[[], hosted_flow_pb2_grpc.HostedFlowServiceStub],
        internal_key: str,
    ) -> None:
        self._stub = stub
        self._internal_key = internal_key
        self._csrf_key = hmac.new(
            internal_key.encode(), b"texture-connect hosted-pages csrf v1", hashlib.sha256
        ).digest()

    # Plumbing -------------------------------------------------------------------------------

    def csrf(self, link_token: str) -> str:
        """Bound to the link, under a key derived for this purpose alone."""
        return hmac.new(self._csrf_key, link_token.encode(), hashlib.sha256).hexdigest()

    async def _call(self, method: str, request: Any) -> Any:
        rpc = getattr(self._stub(), method)
        return await rpc(request, metadata=(("texture-api-key", self._internal_key),), timeout=30)

    async def _get_flow(self, link_token: str) -> hosted_flow_pb2.GetFlowResponse:
        reply: hosted_flow_pb2.GetFlowResponse = await self._call(
            "GetFlow", hosted_flow_pb2.GetFlowRequest(link_token=link_token)
        )
        return reply

    def render(
        self, template: str, link_token: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(
            link_token=link_token, csrf=self.csrf(link_token), **context
        )
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def ended(self, title: str, message: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.render(
            "ended.html", "", status, title=title, message=message, cancellable=False, **context
        )

    def not_found(self) -> HTMLResponse:
        return self.ended(
            "This link is not valid",
            "Check that you opened the whole link, or start again from the app you came from.",
            404,
        )

    def unavailable(self) -> HTMLResponse:
        return self.ended(
            "Something went wrong on our side",
            "Please try again in a minute.",
            503,
        )

    @staticmethod
    def see_other(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    # Rendering a flow ---------------------------------------------------------------------

    def page(
        self,
        link_token: str,
        flow: hosted_flow_pb2.Flow,
        *,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        errors = errors or {}
        context: dict[str, Any] = {
            "client_name": flow.client_name,
            "cancellable": True,
            "manufacturers": list(flow.manufacturers),
            "manufacturer": next(
                (m for m in flow.manufacturers if m.slug == flow.manufacturer), None
            ),
            "errors": errors,
        }
        step = flow.step
        if step == STEP.FLOW_STEP_EXPIRED:
            title, message = ERROR_PAGES["connect_session_expired"]
            return self.ended(title, message, 410, client_name=flow.client_name)
        if step == STEP.FLOW_STEP_COMPLETED:
            return self.ended(
                "You're all set",
                f"Your devices are connected to {flow.client_name}. You can close this page.",
                client_name=flow.client_name,
            )
        if step == STEP.FLOW_STEP_FAILED:
            return self.error_page(link_token, flow, flow.error or "unknown_error", pending=False)
        # The session's own record decides; a notice in the URL only points at it, so a
        # hand-made ?error= cannot show a page the session does not stand on.
        if flow.error in ERROR_PAGES and step != STEP.FLOW_STEP_DEVICES:
            return self.error_page(link_token, flow, flow.error, pending=True)
        if step == STEP.FLOW_STEP_WELCOME:
            return self.render("welcome.html", link_token, status, **context)
        if step == STEP.FLOW_STEP_MANUFACTURER:
            return self.render("manufacturers.html", link_token, status, **context)
        if step == STEP.FLOW_STEP_CUSTOMER_INFO:
            info = flow.customer_info
            prefill = {
                "firstName": info.first_name,
                "lastName": info.last_name,
                "email": info.email,
                "phone": info.phone,
                "location.streetOne": info.location.street_one,
                "location.streetTwo": info.location.street_two,
                "location.city": info.location.city,
                "location.state": info.location.state,
                "location.postalCode": info.location.postal_code,
                "location.country": info.location.country,
            }
            return self.render("customer.html", link_token, status, form=form or prefill, **context)
        if step == STEP.FLOW_STEP_AUTHORIZE:
            return self.render(
                "authorize.html", link_token, status, form=form or {"username": ""}, **context
            )
        if step == STEP.FLOW_STEP_ONE_TIME_CODE:
            return self.render(
                "code.html", link_token, status, delivery=flow.one_time_code_delivery, **context
            )
        if step == STEP.FLOW_STEP_DEVICES:
            return self.render(
                "devices.html", link_token, status, devices=list(flow.devices), **context
            )
        return self.unavailable()

    def error_page(
        self, link_token: str, flow: hosted_flow_pb2.Flow, code: str, *, pending: bool
    ) -> HTMLResponse:
        title, message = ERROR_PAGES.get(code, ERROR_PAGES["unknown_error"])
        return self.render(
            "error.html",
            link_token,
            200,
            client_name=flow.client_name,
            cancellable=False,
            title=title,
            message=message,
            retry=pending and code == flow.error and flow.retryable,
            leave_error=code,
        )

    # Handlers ---------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        link_token = request.path_params["link_token"]
        if not LINK_TOKEN.match(link_token):
            return self.not_found()
        try:
            reply = await self._call(
                "GetFlow", hosted_flow_pb2.GetFlowRequest(link_token=link_token)
            )
        except grpc.aio.AioRpcError as exc:
            return self._rpc_failure(exc)
        return self.page(link_token, reply.flow)

    def _rpc_failure(self, exc: grpc.aio.AioRpcError) -> HTMLResponse:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return self.not_found()
        log.error("HostedFlowService failed: %s", exc.code().name)
        return self.unavailable()

    def action(
        self, handler: Callable[[Request, str, dict[str, str]], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form POST: checks the link and its CSRF token, then runs ``handler``. A step
        that no longer applies (the flow moved on) goes back to the flow's current page."""

        async def endpoint(request: Request) -> Response:
            link_token = request.path_params["link_token"]
            if not LINK_TOKEN.match(link_token):
                return self.not_found()
            form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
            if not hmac.compare_digest(form.get("csrf", ""), self.csrf(link_token)):
                return self.ended(
                    "This form has expired",
                    "Please go back to the connection page and try again.",
                    403,
                )
            try:
                return await handler(request, link_token, form)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.UNAVAILABLE,
                ) and _error_info_has(exc, "texture_error"):
                    # The flow recorded what happened: its page explains and offers retry.
                    return self.see_other(f"/{link_token}")
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                    return self.see_other(f"/{link_token}")
                return self._rpc_failure(exc)

        return endpoint

    async def _flow_step(
        self, link_token: str, method: str, request: Any, *, form: dict[str, str] | None = None
    ) -> Response:
        """Runs a step; on invalid input, shows the same page with the errors inline and
        everything typed kept (except passwords and codes)."""
        try:
            await self._call(method, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            reply = await self._get_flow(link_token)
            return self.page(link_token, reply.flow, errors=_violations(exc), form=form, status=400)
        return self.see_other(f"/{link_token}")

    async def continue_flow(self, _r: Request, link_token: str, _f: dict[str, str]) -> Response:
        await self._call("ContinueFlow", hosted_flow_pb2.ContinueFlowRequest(link_token=link_token))
        return self.see_other(f"/{link_token}")

    async def select_manufacturer(
        self, _r: Request, link_token: str, f: dict[str, str]
    ) -> Response:
        return await self._flow_step(
            link_token,
            "SelectManufacturer",
            hosted_flow_pb2.SelectManufacturerRequest(
                link_token=link_token, manufacturer=f.get("manufacturer", "")
            ),
        )

    async def customer(self, _r: Request, link_token: str, f: dict[str, str]) -> Response:
        info = connection_pb2.CustomerInfo(
            first_name=f.get("firstName", ""),
            last_name=f.get("lastName", ""),
            email=f.get("email", ""),
            phone=f.get("phone", ""),
            location=connection_pb2.Location(
                street_one=f.get("location.streetOne", ""),
                street_two=f.get("location.streetTwo", ""),
                city=f.get("location.city", ""),
                state=f.get("location.state", ""),
                postal_code=f.get("location.postalCode", ""),
                country=f.get("location.country", ""),
            ),
        )
        return await self._flow_step(
            link_token,
            "SubmitCustomerInfo",
            hosted_flow_pb2.SubmitCustomerInfoRequest(link_token=link_token, customer_info=info),
            form={k: v for k, v in f.items() if k != "csrf"},
        )

    async def authorize(self, _r: Request, link_token: str, _f: dict[str, str]) -> Response:
        reply = await self._call(
            "BeginAuthorization", hosted_flow_pb2.BeginAuthorizationRequest(link_token=link_token)
        )
        return self.see_other(reply.authorization_url or f"/{link_token}")

    async def credentials(self, _r: Request, link_token: str, f: dict[str, str]) -> Response:
        return await self._flow_step(
            link_token,
            "SubmitCredentials",
            hosted_flow_pb2.SubmitCredentialsRequest(
                link_token=link_token,
                username=f.get("username", ""),
                password=f.get("password", ""),
            ),
            form={"username": f.get("username", "")},
        )

    async def code(self, _r: Request, link_token: str, f: dict[str, str]) -> Response:
        return await self._flow_step(
            link_token,
            "SubmitOneTimeCode",
            hosted_flow_pb2.SubmitOneTimeCodeRequest(link_token=link_token, code=f.get("code", "")),
        )

    async def devices(self, request: Request, link_token: str, _f: dict[str, str]) -> Response:
        chosen = [v for v in (await request.form()).getlist("device") if isinstance(v, str)]
        try:
            reply = await self._call(
                "SelectDevices",
                hosted_flow_pb2.SelectDevicesRequest(link_token=link_token, device_ids=chosen),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            flow = await self._call(
                "GetFlow", hosted_flow_pb2.GetFlowRequest(link_token=link_token)
            )
            return self.page(link_token, flow.flow, errors=_violations(exc), status=400)
        return self.see_other(reply.redirect_url)

    async def cancel(self, _r: Request, link_token: str, _f: dict[str, str]) -> Response:
        return await self._leave(link_token, "access_denied")

    async def leave(self, _r: Request, link_token: str, f: dict[str, str]) -> Response:
        return await self._leave(link_token, f.get("error", "access_denied"))

    async def _leave(self, link_token: str, error: str) -> Response:
        reply = await self._call(
            "LeaveFlow", hosted_flow_pb2.LeaveFlowRequest(link_token=link_token, error=error)
        )
        return self.see_other(reply.redirect_url)

    def routes(self) -> list[Route]:
        posts = {
            "continue": self.continue_flow,
            "manufacturer": self.select_manufacturer,
            "customer": self.customer,
            "authorize": self.authorize,
            "retry": self.authorize,
            "credentials": self.credentials,
            "code": self.code,
            "devices": self.devices,
            "cancel": self.cancel,
            "leave": self.leave,
        }
        return [
            Route("/{link_token}", self.show, methods=["GET"]),
            *(
                Route(f"/{{link_token}}/{name}", self.action(handler), methods=["POST"])
                for name, handler in posts.items()
            ),
        ]
