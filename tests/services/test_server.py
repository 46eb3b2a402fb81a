"""The server around the services: health, reflection, access log, unknown errors."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from conftest import Org
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support import rich_error

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc
from texture_connect.app import GrpcApp


async def test_health_turns_not_serving_when_shutdown_begins(
    grpc_app: GrpcApp, channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "texture.connect.v1.ConnectionService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await grpc_app.health.enter_graceful_shutdown()
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_services_without_a_key(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for response in stub.ServerReflectionInfo(requests()):
        names |= {s.name for s in response.list_services_response.service}
    assert {
        "texture.connect.v1.ConnectionService",
        "texture.connect.v1.CallbackService",
        "grpc.health.v1.Health",
    } <= names


async def test_one_access_log_line_per_call_without_secrets(
    connections: connection_pb2_grpc.ConnectionServiceStub,
    org: Org,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="texture_connect.access")
    await connections.CreateConnection(
        pb.CreateConnectionRequest(redirect_url="https://app.example/done"), metadata=org.secret
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await connections.CreateConnection(pb.CreateConnectionRequest(), metadata=org.secret)
    with pytest.raises(grpc.aio.AioRpcError):
        await connections.CreateConnection(
            pb.CreateConnectionRequest(), metadata=(("texture-api-key", "tx_sk_wrong"),)
        )
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "texture_connect.access"
    ]
    assert [(line["code"], line["org"]) for line in lines] == [
        ("OK", org.id),
        ("INVALID_ARGUMENT", org.id),
        ("UNAUTHENTICATED", None),
    ]
    for line in lines:
        assert line["method"] == "/texture.connect.v1.ConnectionService/CreateConnection"
        assert line["duration_ms"] >= 0
    assert org.secret_key not in caplog.text and "tx_sk_wrong" not in caplog.text


async def test_unexpected_errors_are_internal_with_error_info_and_no_details(
    connections: connection_pb2_grpc.ConnectionServiceStub,
    org: Org,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from texture_connect.services import connection_service

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(connection_service, "validate_create_connection", explode)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connections.CreateConnection(
            pb.CreateConnectionRequest(redirect_url="https://app.example/done"),
            metadata=org.secret,
        )
    error = rich_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "hunter2" not in error.message
    assert "RuntimeError" in caplog.text  # the operator sees it in the log
