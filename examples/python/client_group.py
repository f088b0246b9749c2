"""Group SlimRPC example client: the four call shapes broadcast to several servers.

Every answer is printed with the member that sent it. With ``--fail-text TEXT`` it
finally sends TEXT, which a server started with ``--fail-on TEXT`` refuses: the refusal
arrives as that member's error item while the other members' responses still arrive.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import slim_bindings
from example_pb2 import ExampleRequest, ExampleResponse
from example_pb2_slimrpc import TestGroupStub
from slim_setup import DEFAULT_NODE, connect, member

TIMEOUT = timedelta(seconds=30)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"GROUP_CLIENT_FAILED: {what}")


def instance_of(source: str, instances: list[str]) -> str:
    matches = [i for i in instances if i in source.split("/")]
    expect(len(matches) == 1, f"source {source!r} names none of {instances}")
    return matches[0]


async def requests(n: int) -> AsyncIterator[ExampleRequest]:
    for i in range(n):
        yield ExampleRequest(example_integer=i, example_string=f"item {i}")


def responses_by_member(
    items: list[tuple[str, ExampleResponse | slim_bindings.RpcError]],
    instances: list[str],
    shape: str,
) -> dict[str, list[str]]:
    by_member: dict[str, list[str]] = {i: [] for i in instances}
    for source, result in items:
        expect(
            isinstance(result, ExampleResponse), f"{shape}: unexpected error {result}"
        )
        assert isinstance(result, ExampleResponse)
        name = instance_of(source, instances)
        # The member named in the item is the one that produced the response.
        expect(
            result.example_string.startswith(f"{name}: "), f"{shape}: {source} {result}"
        )
        by_member[name].append(result.example_string)
        print(f"{shape} [{name}] {result.example_string}", flush=True)
    return by_member


async def amain(node: str, instances: list[str], fail_text: str | None) -> None:
    app, conn_id = await connect("group-client", node)
    channel = slim_bindings.Channel.new_group_with_connection(
        app, [member(i) for i in instances], conn_id
    )
    stub = TestGroupStub(channel)
    request = ExampleRequest(example_integer=1, example_string="world")

    items = [item async for item in stub.ExampleUnaryUnary(request, timeout=TIMEOUT)]
    got = responses_by_member(items, instances, "GROUP_UNARY_UNARY")
    expect(all(len(v) == 1 for v in got.values()), f"unary-unary: {got}")

    items = [item async for item in stub.ExampleUnaryStream(request, timeout=TIMEOUT)]
    got = responses_by_member(items, instances, "GROUP_UNARY_STREAM")
    expect(all(len(v) == 3 for v in got.values()), f"unary-stream: {got}")

    items = [
        item async for item in stub.ExampleStreamUnary(requests(3), timeout=TIMEOUT)
    ]
    got = responses_by_member(items, instances, "GROUP_STREAM_UNARY")
    expect(all(len(v) == 1 for v in got.values()), f"stream-unary: {got}")

    items = [
        item async for item in stub.ExampleStreamStream(requests(3), timeout=TIMEOUT)
    ]
    got = responses_by_member(items, instances, "GROUP_STREAM_STREAM")
    expect(all(len(v) == 3 for v in got.values()), f"stream-stream: {got}")

    if fail_text is not None:
        bad = ExampleRequest(example_integer=7, example_string=fail_text)
        answered, failed = [], []
        async for source, result in stub.ExampleUnaryUnary(bad, timeout=TIMEOUT):
            name = instance_of(source, instances)
            if isinstance(result, slim_bindings.RpcError):
                code = getattr(result, "code", None)
                print(f"GROUP_MEMBER_ERROR [{name}] code={code} {result}", flush=True)
                failed.append(name)
            else:
                print(f"GROUP_MEMBER_OK [{name}] {result.example_string}", flush=True)
                answered.append(name)
        expect(failed != [] and answered != [], f"answered={answered} failed={failed}")
        expect(sorted(answered + failed) == sorted(instances), f"{answered} {failed}")

    await channel.close_async(None)
    print("GROUP_CLIENT_DONE", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default=DEFAULT_NODE, help="SLIM node endpoint")
    parser.add_argument("--servers", default="server1,server2", help="member instances")
    parser.add_argument(
        "--fail-text", default=None, help="request text one member refuses"
    )
    args = parser.parse_args()
    instances = [s.strip() for s in args.servers.split(",") if s.strip()]
    asyncio.run(amain(args.server, instances, args.fail_text))


if __name__ == "__main__":
    main()
