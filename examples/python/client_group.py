"""Group SlimRPC example client: the four call shapes broadcast to several servers.

Every answer is printed with the member that sent it. With ``--fail-text TEXT`` it
finally sends TEXT, which a server started with ``--fail-on TEXT`` refuses: the refusal
arrives as that member's error item while the other members' responses still arrive.

By default it expects the answers of our ``server.py`` (each prefixed with the member's
instance name). With ``--answers official`` it expects those of the official example
server (and of our Rust ``server``): "Hello, World!", five "Response i", "Saw: ...",
"Echo: ..."; every named member must still send all of them, tagged with its own name.
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


# What one member of the official example server answers to each shape, given the
# requests this client sends (``requests(3)`` for the client-streaming shapes).
OFFICIAL_ANSWERS: dict[str, list[str]] = {
    "GROUP_UNARY_UNARY": ["Hello, World!"],
    "GROUP_UNARY_STREAM": [f"Response {i}" for i in range(5)],
    "GROUP_STREAM_UNARY": ["Saw: item 0, item 1, item 2"],
    "GROUP_STREAM_STREAM": [f"Echo: item {i}" for i in range(3)],
}

# How many answers one member of our server.py sends to each shape.
OUR_COUNTS: dict[str, int] = {
    "GROUP_UNARY_UNARY": 1,
    "GROUP_UNARY_STREAM": 3,
    "GROUP_STREAM_UNARY": 1,
    "GROUP_STREAM_STREAM": 3,
}


def check_answers(got: dict[str, list[str]], shape: str, answers: str) -> None:
    """Every member answered ``shape`` completely, in the style ``answers`` names."""
    for name, texts in got.items():
        if answers == "official":
            want = OFFICIAL_ANSWERS[shape]
            expect(texts == want, f"{shape}: {name} sent {texts}, want {want}")
        else:
            n = OUR_COUNTS[shape]
            expect(len(texts) == n, f"{shape}: {got}")


def responses_by_member(
    items: list[tuple[str, ExampleResponse | slim_bindings.RpcError]],
    instances: list[str],
    shape: str,
    answers: str,
) -> dict[str, list[str]]:
    by_member: dict[str, list[str]] = {i: [] for i in instances}
    for source, result in items:
        expect(
            isinstance(result, ExampleResponse), f"{shape}: unexpected error {result}"
        )
        assert isinstance(result, ExampleResponse)
        name = instance_of(source, instances)
        if answers == "ours":
            # The member named in the item is the one that produced the response.
            expect(
                result.example_string.startswith(f"{name}: "),
                f"{shape}: {source} {result}",
            )
        by_member[name].append(result.example_string)
        print(f"{shape} [{name}] {result.example_string}", flush=True)
    return by_member


async def amain(
    node: str, instances: list[str], fail_text: str | None, answers: str
) -> None:
    app, conn_id = await connect("group-client", node)
    channel = slim_bindings.Channel.new_group_with_connection(
        app, [member(i) for i in instances], conn_id
    )
    stub = TestGroupStub(channel)
    request = ExampleRequest(example_integer=1, example_string="world")

    items = [item async for item in stub.ExampleUnaryUnary(request, timeout=TIMEOUT)]
    got = responses_by_member(items, instances, "GROUP_UNARY_UNARY", answers)
    check_answers(got, "GROUP_UNARY_UNARY", answers)

    items = [item async for item in stub.ExampleUnaryStream(request, timeout=TIMEOUT)]
    got = responses_by_member(items, instances, "GROUP_UNARY_STREAM", answers)
    check_answers(got, "GROUP_UNARY_STREAM", answers)

    items = [
        item async for item in stub.ExampleStreamUnary(requests(3), timeout=TIMEOUT)
    ]
    got = responses_by_member(items, instances, "GROUP_STREAM_UNARY", answers)
    check_answers(got, "GROUP_STREAM_UNARY", answers)

    items = [
        item async for item in stub.ExampleStreamStream(requests(3), timeout=TIMEOUT)
    ]
    got = responses_by_member(items, instances, "GROUP_STREAM_STREAM", answers)
    check_answers(got, "GROUP_STREAM_STREAM", answers)

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
    parser.add_argument(
        "--answers",
        choices=["ours", "official"],
        default="ours",
        help="answer style to expect: our server.py (default) or the official "
        "example server / our Rust server",
    )
    args = parser.parse_args()
    if args.fail_text is not None and args.answers == "official":
        parser.error("--fail-text needs servers started with --fail-on (ours)")
    instances = [s.strip() for s in args.servers.split(",") if s.strip()]
    asyncio.run(amain(args.server, instances, args.fail_text, args.answers))


if __name__ == "__main__":
    main()
