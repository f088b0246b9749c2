"""Empty responses over slim-bindings 3.x with stubs generated for ``wkt/well_known.proto``.

A message with no fields set (``google.protobuf.Empty``, an empty ``ListValue`` or
``FieldMask``) serializes to zero bytes. SLIM 3 marks the end of a response stream with a
status code, so such a response is data; SLIM 1.3 took any empty frame for the end. Roles:

* ``server --node URL --instance NAME``: serves ``wkt.v1.WellKnown``, every answer empty;
* ``client --node URL --servers A,B``: calls A point-to-point, then A and B as a group, and
  prints one line per call shape with what arrived.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta

import slim_bindings
from google.protobuf import (
    any_pb2,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
)

from wkt import well_known_pb2_slimrpc as stubs

ORG, NS = "agntcy", "emptytest"
SECRET = "a_shared_secret_of_more_than_32_bytes_for_tests"
TIMEOUT = timedelta(seconds=20)
STREAM_LEN = 3


class AlwaysEmpty(stubs.WellKnownServicer):
    async def EmptyToEmpty(
        self, request: empty_pb2.Empty, context: slim_bindings.Context
    ) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def ValueToList(
        self, request: struct_pb2.Value, context: slim_bindings.Context
    ) -> AsyncIterator[struct_pb2.ListValue]:
        for _ in range(STREAM_LEN):
            yield struct_pb2.ListValue()

    async def TimestampToDuration(
        self,
        request_iterator: AsyncIterator[timestamp_pb2.Timestamp],
        context: slim_bindings.Context,
    ) -> duration_pb2.Duration:
        async for _ in request_iterator:
            pass
        return duration_pb2.Duration()

    async def AnyToFieldMask(
        self,
        request_iterator: AsyncIterator[any_pb2.Any],
        context: slim_bindings.Context,
    ) -> AsyncIterator[field_mask_pb2.FieldMask]:
        async for _ in request_iterator:
            yield field_mask_pb2.FieldMask()


async def app(node: str, name: str) -> tuple[slim_bindings.App, int]:
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())  # type: ignore[arg-type]
    tracing = slim_bindings.new_tracing_config()
    tracing.log_level = "warn"
    slim_bindings.initialize_with_configs(
        tracing_config=tracing,
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    service = slim_bindings.get_global_service()
    conn = await service.connect_async(slim_bindings.new_insecure_client_config(node))
    local = slim_bindings.Name(ORG, NS, name)
    local_app = service.create_app_with_secret(local, SECRET)
    await local_app.subscribe_async(local, conn)
    return local_app, conn


async def serve(node: str, instance: str) -> None:
    local_app, conn = await app(node, instance)
    name = slim_bindings.Name(ORG, NS, instance)
    server = slim_bindings.Server.new_with_connection(local_app, name, conn)
    stubs.add_WellKnownServicer_to_server(AlwaysEmpty(), server)
    print(f"EMPTY_SERVER_READY {instance}", flush=True)
    await server.serve_async()


async def timestamps() -> AsyncIterable[timestamp_pb2.Timestamp]:
    for _ in range(STREAM_LEN):
        yield timestamp_pb2.Timestamp()


async def anys() -> AsyncIterable[any_pb2.Any]:
    for _ in range(STREAM_LEN):
        yield any_pb2.Any()


async def call(node: str, servers: list[str]) -> None:
    local_app, conn = await app(node, "client")
    names = [slim_bindings.Name(ORG, NS, s) for s in servers]

    p2p = slim_bindings.Channel.new_with_connection(local_app, names[0], conn)
    stub = stubs.WellKnownStub(p2p)
    unary = await stub.EmptyToEmpty(empty_pb2.Empty(), timeout=TIMEOUT)
    print(f"P2P_UNARY {type(unary).__name__}", flush=True)
    items = [r async for r in stub.ValueToList(struct_pb2.Value(), timeout=TIMEOUT)]
    print(f"P2P_UNARY_STREAM {len(items)}", flush=True)
    single = await stub.TimestampToDuration(timestamps(), timeout=TIMEOUT)
    print(f"P2P_STREAM_UNARY {type(single).__name__}", flush=True)
    items2 = [r async for r in stub.AnyToFieldMask(anys(), timeout=TIMEOUT)]
    print(f"P2P_STREAM_STREAM {len(items2)}", flush=True)

    group = slim_bindings.Channel.new_group_with_connection(local_app, names, conn)
    gstub = stubs.WellKnownGroupStub(group)
    shapes = {
        "GROUP_UNARY": gstub.EmptyToEmpty(empty_pb2.Empty(), timeout=TIMEOUT),
        "GROUP_UNARY_STREAM": gstub.ValueToList(struct_pb2.Value(), timeout=TIMEOUT),
        "GROUP_STREAM_UNARY": gstub.TimestampToDuration(timestamps(), timeout=TIMEOUT),
        "GROUP_STREAM_STREAM": gstub.AnyToFieldMask(anys(), timeout=TIMEOUT),
    }
    for label, results in shapes.items():
        per_member: dict[str, int] = {}
        async for source, result in results:
            if isinstance(result, slim_bindings.RpcError):
                raise result
            member = source.rsplit("/", 1)[-1]
            per_member[member] = per_member.get(member, 0) + 1
        counts = ",".join(f"{m}={n}" for m, n in sorted(per_member.items()))
        print(f"{label} {counts}", flush=True)
    print("EMPTY_CLIENT_DONE", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--node", required=True)
    parser.add_argument("--instance", default="server")
    parser.add_argument("--servers", default="server1,server2")
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(serve(args.node, args.instance))
    else:
        asyncio.run(call(args.node, args.servers.split(",")))


if __name__ == "__main__":
    main()
