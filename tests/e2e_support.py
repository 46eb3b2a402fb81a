"""End-to-end helpers and the `serve` fixture: the real `texture-connect serve`, over TCP.

Readiness is the line the server prints once both gRPC and HTTP listen, read from its
stdout pipe; nothing here sleeps to wait for anything.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
from google.protobuf import json_format

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc

READY_PREFIX = "texture-connect: gRPC on "
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: Mapping[str, str], *args: str) -> str:
    """Runs a ``texture-connect`` command; returns its stdout, failing loudly."""
    done = subprocess.run(
        [sys.executable, "-m", "texture_connect", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"texture-connect {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class Server:
    env: dict[str, str]
    grpc_addr: str
    http_url: str
    log_path: Path
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    command: tuple[str, ...] = ("serve", "--sandbox")
    ready_prefix: str = READY_PREFIX

    def start(self) -> Server:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "texture_connect", *self.command],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        assert self.process.stdout is not None
        # Blocking reads on the pipe: returns at the ready line, or EOF if it died.
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith(self.ready_prefix):
                return self
        raise AssertionError(f"server exited before listening: {self.log_path.read_text()}")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        if self.process.stdout and not self.process.stdout.closed:
            self.output.extend(self.process.stdout.readlines())
            self.process.stdout.close()
        return code

    def logs(self) -> str:
        return self.log_path.read_text()

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.grpc_addr)


@dataclass
class OrgKeys:
    org_id: str
    secret_key: str
    connect_key: str

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        return (("texture-api-key", self.secret_key),)


def server_env(
    tmp: Path, database_url: str | None = None, **extra: str
) -> tuple[dict[str, str], str, str]:
    grpc_port, http_port = free_port(), free_port()
    http_url = f"http://127.0.0.1:{http_port}"
    env = {
        **os.environ,
        "TEXTURE_DATA_DIR": str(tmp / "data"),
        "TEXTURE_DATABASE_URL": database_url or f"sqlite:///{tmp / 'data' / 'texture.db'}",
        "TEXTURE_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "TEXTURE_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "TEXTURE_PUBLIC_URL": http_url,
        "TEXTURE_LOG_LEVEL": "DEBUG",
        **extra,
    }
    return env, f"127.0.0.1:{grpc_port}", http_url


def make_org(env: Mapping[str, str], name: str = "Energy Coffee", headless: bool = True) -> OrgKeys:
    org_id = cli(env, "orgs", "create", "--name", name, *(["--headless"] if headless else []))
    org_id = org_id.strip().splitlines()[-1]
    secret = cli(env, "keys", "create", "--org", org_id, "--kind", "secret").splitlines()[-1]
    connect = cli(env, "keys", "create", "--org", org_id, "--kind", "connect").splitlines()[-1]
    return OrgKeys(org_id, secret, connect)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``serve(**env)`` migrates a fresh database and starts ``serve --sandbox``.
    Every server it started is stopped (SIGTERM) at teardown and must exit cleanly."""
    started: list[Server] = []

    def start(database_url: str | None = None, *, migrate: bool = True, **extra: str) -> Server:
        env, grpc_addr, http_url = server_env(tmp_path, database_url, **extra)
        if migrate:
            cli(env, "migrate")
        server = Server(env, grpc_addr, http_url, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        assert server.stop() == 0, server.logs()


HEADLESS_BODY: dict[str, Any] = {
    "mode": "CONNECT_MODE_HEADLESS",
    "manufacturerFilters": {"manufacturers": ["tesla"]},
    "customerInfo": {
        "firstName": "Jane",
        "lastName": "Smith",
        "email": "jane@example.com",
        "location": {
            "streetOne": "123 Main St",
            "city": "Austin",
            "state": "TX",
            "postalCode": "78701",
            "country": "US",
        },
    },
    "redirectUrl": "https://yourapp.com/oauth/callback",
}


async def create_connection(
    server: Server, org: OrgKeys, body: Mapping[str, Any] | None = None, **changes: Any
) -> pb.CreateConnectionResponse:
    request = json_format.ParseDict(
        {**(body or HEADLESS_BODY), **changes}, pb.CreateConnectionRequest()
    )
    async with server.channel() as channel:
        stub = connection_pb2_grpc.ConnectionServiceStub(channel)
        response: pb.CreateConnectionResponse = await stub.CreateConnection(
            request, metadata=org.metadata, timeout=10
        )
    return response


async def authorize(
    http: httpx.AsyncClient, url: str, user: str = "user_good", decision: str = "allow"
) -> str:
    """Signs in at the sandbox manufacturer; returns where it sends the browser (our
    callback URL with code or error, state and iss)."""
    response = await http.post(
        url, data={"username": user, "password": "pass_good", "decision": decision}
    )
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def follow_callback(http: httpx.AsyncClient, callback_url: str) -> httpx.Response:
    return await http.get(callback_url)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def new_reference() -> str:
    return "ref-" + secrets.token_hex(4)


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
