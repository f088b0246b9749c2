"""Point-to-point SlimRPC example client: runs the four call shapes against one server."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import slim_bindings
from example_pb2 import ExampleRequest
from example_pb2_slimrpc import TestStub
from slim_setup import DEFAULT_NODE, connect, member

TIMEOUT = timedelta(seconds=30)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"CLIENT_FAILED: {what}")


async def requests(n: int) -> AsyncIterator[ExampleRequest]:
    for i in range(n):
        yield ExampleRequest(example_integer=i, example_string=f"item {i}")


async def amain(node: str, target: str) -> None:
    app, conn_id = await connect("client", node)
    channel = slim_bindings.Channel.new_with_connection(app, member(target), conn_id)
    stub = TestStub(channel)
    request = ExampleRequest(example_integer=1, example_string="world")

    response = await stub.ExampleUnaryUnary(request, timeout=TIMEOUT)
    expect(response.example_string == f"{target}: hello world", str(response))
    expect(response.example_integer == 2, str(response))
    print(f"UNARY_UNARY {response.example_string}", flush=True)

    texts = [
        r.example_string
        async for r in stub.ExampleUnaryStream(request, timeout=TIMEOUT)
    ]
    expect(texts == [f"{target}: world #{i}" for i in range(3)], str(texts))
    print(f"UNARY_STREAM {len(texts)} responses", flush=True)

    response = await stub.ExampleStreamUnary(requests(3), timeout=TIMEOUT)
    expect(
        response.example_string == f"{target}: saw item 0, item 1, item 2",
        str(response),
    )
    print(f"STREAM_UNARY {response.example_string}", flush=True)

    echoes = [
        (r.example_integer, r.example_string)
        async for r in stub.ExampleStreamStream(requests(3), timeout=TIMEOUT)
    ]
    expect(
        echoes == [(i * 100, f"{target}: echo item {i}") for i in range(3)], str(echoes)
    )
    print(f"STREAM_STREAM {len(echoes)} responses", flush=True)

    await channel.close_async(None)
    print("CLIENT_DONE", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default=DEFAULT_NODE, help="SLIM node endpoint")
    parser.add_argument("--target", default="server1", help="server instance to call")
    args = parser.parse_args()
    asyncio.run(amain(args.server, args.target))


if __name__ == "__main__":
    main()
