"""The official side of the issue #5 benchmark (`benches/e2e.rs`).

Uses the official `slim_bindings` 1.3.0 wheel (run with the project's
`.venv/bin/python`) in the same three roles, with the same arguments, as the
Rust bench binary:

* ``node --port P``: an embedded SLIM node on 127.0.0.1:P
  (``service.run_server_async``); prints ``NODE_READY``.
* ``servers --slim URL --instances a,b,..``: one app and SlimRPC server per
  instance (``agntcy/grpc/<instance>``), each answering ``bench.Bench/Echo``
  with its request; prints ``SERVERS_READY``.
* ``client --slim URL --case p2p-seq|p2p-conc|group --members a,b --n N
  --label L``: one first (set-up) call, then N timed calls (sequential, or 16
  concurrent callers on one channel); prints one ``BENCH_ROW key=value ...``
  line. If a timed call fails, the callers stop, the row covers the calls
  that completed, and a ``BENCH_ERROR <message>`` line follows it (the
  official group session gives up with "message send retries exhausted"
  under sustained load once Nagle is off).

This script measures; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

import slim_bindings

ORG = "agntcy"
NS = "grpc"
SECRET = "my_shared_secret_for_testing_purposes_only"
SVC = "bench.Bench"
METHOD = "Echo"
CONCURRENCY = 16
TIMEOUT = timedelta(seconds=60)
# The same bytes as the Rust client's `Blob { data: [7; 64] }`.
PAYLOAD = b"\x0a\x40" + b"\x07" * 64


def init() -> slim_bindings.Service:
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())  # type: ignore[arg-type]
    tracing = slim_bindings.new_tracing_config()
    tracing.log_level = "warn"
    slim_bindings.initialize_with_configs(
        tracing_config=tracing,
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    return slim_bindings.get_global_service()


async def node(args: argparse.Namespace) -> None:
    service = init()
    await service.run_server_async(
        slim_bindings.new_insecure_server_config(f"127.0.0.1:{args.port}")
    )
    print(f"NODE_READY 127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


class Echo:
    """`bench.Bench/Echo`: answers with the request bytes."""

    async def handle(self, request: bytes, context: slim_bindings.Context) -> bytes:
        return request


async def servers(args: argparse.Namespace) -> None:
    service = init()
    conn = await service.connect_async(
        slim_bindings.new_insecure_client_config(args.slim)
    )
    tasks = []
    for instance in args.instances.split(","):
        name = slim_bindings.Name(ORG, NS, instance)
        app = service.create_app_with_secret(name, SECRET)
        await app.subscribe_async(name, conn)
        server = slim_bindings.Server.new_with_connection(app, name, conn)
        server.register_unary_unary(SVC, METHOD, Echo())  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(server.serve_async()))
    # Let every serve loop start before the client is told to go.
    await asyncio.sleep(0.5)
    print(f"SERVERS_READY {len(tasks)}", flush=True)
    await asyncio.gather(*tasks)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(sorted_lat: list[float], p: float) -> float:
    if not sorted_lat:
        return float("nan")
    rank = min(max(1, -int(-p * len(sorted_lat) // 1)), len(sorted_lat))
    return sorted_lat[rank - 1] * 1e3


async def client(args: argparse.Namespace) -> None:
    service = init()
    conn = await service.connect_async(
        slim_bindings.new_insecure_client_config(args.slim)
    )
    me = slim_bindings.Name(ORG, NS, f"client-{args.label}")
    app = service.create_app_with_secret(me, SECRET)
    await app.subscribe_async(me, conn)
    members = [slim_bindings.Name(ORG, NS, m) for m in args.members.split(",")]
    k = len(members)
    if k > 1:
        channel = slim_bindings.Channel.new_group_with_connection(app, members, conn)
    else:
        channel = slim_bindings.Channel.new_with_connection(app, members[0], conn)

    async def one() -> None:
        if k > 1:
            reader = await channel.call_multicast_unary_async(
                SVC, METHOD, PAYLOAD, TIMEOUT, None
            )
            got = 0
            while True:
                msg = await reader.next_async()
                if msg.is_end():
                    break
                if msg.is_error():
                    raise RuntimeError(f"member error: {msg.error}")
                got += 1
            if got != k:
                raise RuntimeError(f"{got} answers from {k} members")
        else:
            await channel.call_unary_async(SVC, METHOD, PAYLOAD, TIMEOUT, None)

    t = time.perf_counter()
    await one()
    setup = time.perf_counter() - t

    lat: list[float] = []
    errors: list[str] = []
    last_ok = [0.0]  # when the latest successful call ended

    async def worker(calls: int) -> None:
        for _ in range(calls):
            if errors:
                return
            t = time.perf_counter()
            try:
                await one()
            except Exception as e:  # noqa: BLE001 - reported, not handled
                errors.append(str(e).replace("\n", " "))
                return
            last_ok[0] = time.perf_counter()
            lat.append(last_ok[0] - t)

    t = time.perf_counter()
    if args.case == "p2p-conc":
        await asyncio.gather(
            *(
                worker(args.n // CONCURRENCY + (1 if w < args.n % CONCURRENCY else 0))
                for w in range(CONCURRENCY)
            )
        )
    else:
        await worker(args.n)
    # A stopped run is timed up to its last answer, not through the failed
    # call's retries.
    wall = (last_ok[0] if errors and lat else time.perf_counter()) - t
    rss = rss_mb()
    lat.sort()
    print(
        f"BENCH_ROW case={args.case} k={k} calls={len(lat)} secs={wall:.3f} "
        f"calls_per_s={len(lat) / wall:.1f} p50_ms={percentile(lat, 0.5):.3f} "
        f"p99_ms={percentile(lat, 0.99):.3f} setup_ms={setup * 1e3:.1f} rss_mb={rss:.1f}",
        flush=True,
    )
    if errors:
        print(f"BENCH_ERROR {errors[0]}", flush=True)
    try:
        await asyncio.wait_for(channel.close_async(None), 10)
    except Exception:  # noqa: BLE001 - the figures are out; closing is best effort
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("node")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("servers")
    p.add_argument("--slim", required=True)
    p.add_argument("--instances", required=True)
    p = sub.add_parser("client")
    p.add_argument("--slim", required=True)
    p.add_argument("--case", required=True, choices=["p2p-seq", "p2p-conc", "group"])
    p.add_argument("--members", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--label", required=True)
    args = parser.parse_args()
    role = {"node": node, "servers": servers, "client": client}[args.role]
    asyncio.run(role(args))


if __name__ == "__main__":
    main()
