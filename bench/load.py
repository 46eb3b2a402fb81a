"""Load generator for Texture Connect (run by hand: `make bench`; never part of `make test`).

Starts a real `texture-connect serve --sandbox` process on a fresh SQLite database, then,
from this separate process, drives it with many concurrent calls over gRPC and HTTP:

1. grpc.health.v1.Health/Check: the framework's ceiling (a no-op RPC on the same server);
2. ConnectionService/CreateConnection (standard mode with full customerInfo);
3. complete headless flows: CreateConnection, sign-in at the sandbox manufacturer, the
   callback through the HTTP shim to CallbackService, the redirect with the scoped key.

It prints throughput and p50/p99 latency for each, the ratios against the health Check,
and the server's resident memory (RSS) before and after each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

# The e2e helpers start the real server process the same way the tests do (PYTHONPATH=tests).
from e2e_support import Server, cli, make_org, server_env
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from texture.connect.v1 import connection_pb2 as pb
from texture.connect.v1 import connection_pb2_grpc


@dataclass
class Result:
    name: str
    calls: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.throughput:>9.1f}/s  p50 {self.percentile(0.5):>7.2f} ms"
            f"  p99 {self.percentile(0.99):>7.2f} ms  errors {self.errors}"
        )


async def run_load(
    name: str, call: Callable[[], Awaitable[None]], *, concurrency: int, total: int
) -> Result:
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, len(latencies), errors, time.perf_counter() - started, latencies)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def standard_body() -> pb.CreateConnectionRequest:
    suffix = secrets.token_hex(4)
    return json_format.ParseDict(
        {
            "redirectUrl": "https://yourapp.com/done",
            "referenceId": f"bench-{suffix}",
            "tags": ["bench"],
            "customerInfo": {
                "firstName": "Bench",
                "lastName": "User",
                "email": f"bench-{suffix}@example.com",
                "location": {
                    "streetOne": f"{secrets.randbelow(9999)} Main St",
                    "city": "Austin",
                    "state": "TX",
                    "postalCode": "78701",
                    "country": "US",
                },
            },
        },
        pb.CreateConnectionRequest(),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--flows", type=int, default=500)
    parser.add_argument("--flow-concurrency", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="texture-bench-") as tmp:
        env, grpc_addr, http_url = server_env(
            Path(tmp), TEXTURE_LOG_LEVEL="WARNING", TEXTURE_SESSION_TTL="1800"
        )
        cli(env, "migrate")
        org = make_org(env)
        server = Server(env, grpc_addr, http_url, Path(tmp) / "server.log").start()
        assert server.process is not None
        pid = server.process.pid
        try:
            await bench(server, org.metadata, pid, args, http_url)
        finally:
            server.stop()


async def bench(server: Server, metadata, pid: int, args, http_url: str) -> None:  # type: ignore[no-untyped-def]
    print(f"server pid {pid}; {os.cpu_count()} cores; concurrency {args.concurrency}")
    results: list[Result] = []
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        connections = connection_pb2_grpc.ConnectionServiceStub(channel)
        check = health_pb2.HealthCheckRequest(service="texture.connect.v1.ConnectionService")

        async def health_call() -> None:
            await health.Check(check, timeout=10)

        async def create_call() -> None:
            await connections.CreateConnection(standard_body(), metadata=metadata, timeout=10)

        # Warm up both paths (connections, caches, SQLite pages).
        await run_load("warm-up", health_call, concurrency=8, total=200)
        await run_load("warm-up", create_call, concurrency=8, total=200)
        memory = [("start", rss_mib(pid))]
        ceiling = await run_load(
            "Health/Check (no-op ceiling)",
            health_call,
            concurrency=args.concurrency,
            total=args.calls,
        )
        results.append(ceiling)
        memory.append(("after Health/Check", rss_mib(pid)))
        create = await run_load(
            "CreateConnection (SQLite)",
            create_call,
            concurrency=args.concurrency,
            total=args.calls,
        )
        results.append(create)
        memory.append((f"after {args.calls} CreateConnection", rss_mib(pid)))

        callback_latencies: list[float] = []
        headless = {
            "mode": "CONNECT_MODE_HEADLESS",
            "manufacturerFilters": {"manufacturers": ["tesla"]},
            "redirectUrl": "https://yourapp.com/oauth/callback",
        }
        async with httpx.AsyncClient(timeout=30) as http:

            async def flow_call() -> None:
                body = standard_body()
                request = json_format.ParseDict(headless, pb.CreateConnectionRequest())
                request.customer_info.CopyFrom(body.customer_info)
                created = await connections.CreateConnection(request, metadata=metadata)
                signed_in = await http.post(
                    created.authorization.url,
                    data={"username": "user_good", "password": "pass_good", "decision": "allow"},
                )
                started = time.perf_counter()
                landed = await http.get(signed_in.headers["location"])
                callback_latencies.append((time.perf_counter() - started) * 1000)
                if "texture_scoped_key=" not in landed.headers.get("location", ""):
                    raise RuntimeError("flow did not complete")

            await run_load("warm-up", flow_call, concurrency=4, total=20)
            callback_latencies.clear()
            flows = await run_load(
                "complete headless flows",
                flow_call,
                concurrency=args.flow_concurrency,
                total=args.flows,
            )
        results.append(flows)
        memory.append((f"after {args.flows} headless flows", rss_mib(pid)))

    print()
    for result in results:
        print(result.line())
    callback = Result("  callback leg alone", len(callback_latencies), 0, 1, callback_latencies)
    print(
        f"{callback.name:<34} {'':>11}  p50 {callback.percentile(0.5):>7.2f} ms"
        f"  p99 {callback.percentile(0.99):>7.2f} ms"
    )
    print()
    print(
        f"CreateConnection / Health.Check throughput: {create.throughput / ceiling.throughput:.2f}"
        f"  (target >= 0.50; p99 target < 50 ms at 64 in flight: {create.percentile(0.99):.1f} ms)"
    )
    print(f"headless flows / Health.Check throughput: {flows.throughput / ceiling.throughput:.3f}")
    print()
    for label, mib in memory:
        print(f"server RSS {label:<34} {mib:8.1f} MiB")
    print(
        json.dumps(
            {
                "create_vs_health": round(create.throughput / ceiling.throughput, 3),
                "create_p99_ms": round(create.percentile(0.99), 2),
                "flows_per_s": round(flows.throughput, 1),
                "callback_p50_ms": round(callback.percentile(0.5), 2),
                "callback_p99_ms": round(callback.percentile(0.99), 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
