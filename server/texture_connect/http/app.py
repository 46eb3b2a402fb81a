"""The HTTP side: the OAuth callback shim (and, in development, the sandbox manufacturer).

It holds no state and opens no database: ``GET /v1/oauth/callback`` forwards the query to
``CallbackService`` over gRPC with the front end's internal credential and answers 302 to
the URL it gets back. Only URLs that come from a stored session are ever redirected to;
when there is none (a missing, malformed or unknown state) the customer sees a plain page.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from texture.connect.v1 import callback_pb2, callback_pb2_grpc, hosted_flow_pb2_grpc
from texture_connect.http.hosted import HostedPages

log = logging.getLogger("texture_connect.http")

STATIC_DIR = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
# The parameters of an authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
CALLBACK_PARAMS = ("state", "code", "error", "error_description", "error_uri", "iss")
MAX_PARAM_LENGTH = 4096

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
line-height:1.5;color:#1d2430}}h1{{font-size:1.4rem}}</style></head>
<body><main><h1>{title}</h1><p>{message}</p></main></body></html>
"""


def page(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), message=html.escape(message)),
        status_code=status,
        headers={
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
            ),
            "X-Frame-Options": "DENY",
        },
    )


class SecurityHeaders:
    """Adds the headers every response of ours carries (the sandbox's too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in {h.lower() for h in SECURITY_HEADERS}
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_http_app(
    *,
    grpc_target: str,
    internal_key: str,
    sandbox: ASGIApp | None = None,
) -> Starlette:
    channel: grpc.aio.Channel | None = None

    def grpc_channel() -> grpc.aio.Channel:
        nonlocal channel
        if channel is None:
            channel = grpc.aio.insecure_channel(grpc_target)
        return channel

    def stub() -> callback_pb2_grpc.CallbackServiceStub:
        return callback_pb2_grpc.CallbackServiceStub(grpc_channel())

    hosted = HostedPages(
        lambda: hosted_flow_pb2_grpc.HostedFlowServiceStub(grpc_channel()), internal_key
    )

    async def oauth_callback(request: Request) -> Response:
        query = request.query_params
        if not query.get("state"):
            return page(
                "This sign-in link is not valid",
                "The manufacturer sent you back without the information we need to finish "
                "connecting your device. Please start again from the app you came from.",
                400,
            )
        fields = {
            name: query.get(name, "")[:MAX_PARAM_LENGTH]
            for name in CALLBACK_PARAMS
            if name in query
        }
        try:
            reply = await stub().HandleOAuthCallback(
                callback_pb2.HandleOAuthCallbackRequest(**fields),
                metadata=(("texture-api-key", internal_key),),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                return page(
                    "This sign-in link is not valid",
                    "We could not match this sign-in to a connection in progress. "
                    "Please start again from the app you came from.",
                    400,
                )
            log.error("CallbackService failed: %s", exc.code().name)
            return page(
                "Something went wrong",
                "We could not finish connecting your device. Please try again in a minute.",
                502 if exc.code() is not grpc.StatusCode.UNAVAILABLE else 503,
            )
        return RedirectResponse(reply.redirect_url, status_code=302)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def favicon(_request: Request) -> Response:
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if channel is not None:
            await channel.close()

    routes: list[Route | Mount] = [
        Route("/v1/oauth/callback", oauth_callback, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]
    if sandbox is not None:
        routes.append(Mount("/sandbox", app=sandbox))
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR)))
    routes.extend(hosted.routes())
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
