"""Group SlimRPC example client: the four call shapes broadcast to several servers.

Every answer is printed with the member that sent it. With ``--fail-text TEXT`` it
finally sends TEXT, which a server started with ``--fail-on TEXT`` refuses: the refusal
arrives as that member's error item while the other members' responses still arrive.

By default it expects the answers of our ``server.py`` (each prefixed with the member's
instance name). With ``--answers official`` it expects those of the official example
server (and of our Rust ``server``): "Hello, World!", five "Response i", "Saw: ...",
"Echo: ..."; every named member must still send all of them, tagged with its own name.

With ``--reducers`` (our ``server.py`` only) it also runs the generated reducers over
group calls (first response, quorum, majority, fold) and, with ``--fail-text``, checks
that majority and quorum report the refusing member in their ``ReduceError``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import slim_bindings
from example_pb2 import ExampleRequest, ExampleResponse
from example_pb2_slimrpc import (
    ReduceError,
    TestGroupStub,
    first_response,
    fold_results,
    majority,
    quorum,
)
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


def answer_text(response: ExampleResponse) -> str:
    """Our server.py's answer without its ``<member>: `` prefix."""
    return response.example_string.split(": ", 1)[-1]


async def check_reducers(
    stub: TestGroupStub,
    request: ExampleRequest,
    instances: list[str],
    fail_text: str | None,
) -> None:
    source, first = await first_response(
        stub.ExampleUnaryUnary(request, timeout=TIMEOUT)
    )
    name = instance_of(source, instances)
    expect(first.example_string.startswith(f"{name}: "), f"first: {source} {first}")
    print(f"REDUCER_FIRST_OK [{name}]", flush=True)

    formed = await quorum(
        stub.ExampleUnaryUnary(request, timeout=TIMEOUT), len(instances)
    )
    names = sorted(instance_of(s, instances) for s, _ in formed)
    expect(names == sorted(instances), f"quorum formed by {names}")
    print(f"REDUCER_QUORUM_OK {names}", flush=True)

    key, votes = await majority(
        stub.ExampleUnaryUnary(request, timeout=TIMEOUT), answer_text
    )
    expect(len(votes) == len(instances), f"majority {key!r} with {len(votes)} votes")
    print(f"REDUCER_MAJORITY_OK {key!r} {len(votes)}", flush=True)

    count, failed = await fold_results(
        stub.ExampleUnaryStream(request, timeout=TIMEOUT),
        0,
        lambda acc, _source, _response: acc + 1,
    )
    expect(failed == [] and count == 3 * len(instances), f"fold {count} {failed}")
    print(f"REDUCER_FOLD_OK {count}", flush=True)

    if fail_text is None:
        return
    bad = ExampleRequest(example_integer=7, example_string=fail_text)
    try:
        await majority(stub.ExampleUnaryUnary(bad, timeout=TIMEOUT), answer_text)
        expect(len(instances) > 2, "a majority without the refusing member")
    except ReduceError as e:
        expect(len(e.failed) == 1, f"majority error {e}")
        print(f"REDUCER_NO_MAJORITY_OK {e.reason}", flush=True)
    try:
        await quorum(stub.ExampleUnaryUnary(bad, timeout=TIMEOUT), len(instances))
        expect(False, "a full quorum without the refusing member")
    except ReduceError as e:
        expect(len(e.failed) == 1, f"quorum error {e}")
        print(f"REDUCER_NO_QUORUM_OK {e.reason}", flush=True)


async def amain(
    node: str,
    instances: list[str],
    fail_text: str | None,
    answers: str,
    reducers: bool = False,
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

    if reducers:
        await check_reducers(stub, request, instances, fail_text)

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
    parser.add_argument(
        "--reducers",
        action="store_true",
        help="also run the generated reducers (needs our server.py)",
    )
    args = parser.parse_args()
    if args.fail_text is not None and args.answers == "official":
        parser.error("--fail-text needs servers started with --fail-on (ours)")
    instances = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.reducers and args.answers == "official":
        parser.error("--reducers needs our server.py")
    asyncio.run(
        amain(args.server, instances, args.fail_text, args.answers, args.reducers)
    )


if __name__ == "__main__":
    main()
