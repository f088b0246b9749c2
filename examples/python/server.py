"""SlimRPC example server for ``example_service.Test`` using our generated stubs.

Run several instances side by side (``--instance server1``, ``--instance server2``) for
``client_group.py``. With ``--fail-on TEXT`` this instance answers every request whose
``example_string`` is TEXT with an error, to show that a group call still delivers the
other members' answers.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import slim_bindings
from example_pb2 import ExampleRequest, ExampleResponse
from example_pb2_slimrpc import TestServicer, add_TestServicer_to_server
from slim_setup import DEFAULT_NODE, connect


class TestService(TestServicer):
    """Answers with this instance's name in every response."""

    def __init__(self, instance: str, fail_on: str | None) -> None:
        self.instance = instance
        self.fail_on = fail_on

    def check(self, request: ExampleRequest) -> None:
        if self.fail_on is not None and request.example_string == self.fail_on:
            # RpcError's variants are attached at runtime (invisible to type checkers).
            raise slim_bindings.RpcError.Rpc(  # type: ignore[attr-defined]
                slim_bindings.RpcCode.FAILED_PRECONDITION,
                f"{self.instance} refuses {request.example_string!r}",
                None,
            )

    async def ExampleUnaryUnary(
        self,
        request: ExampleRequest,
        context: slim_bindings.Context,
    ) -> ExampleResponse:
        self.check(request)
        return ExampleResponse(
            example_integer=request.example_integer + 1,
            example_string=f"{self.instance}: hello {request.example_string}",
        )

    async def ExampleUnaryStream(
        self,
        request: ExampleRequest,
        context: slim_bindings.Context,
    ) -> AsyncIterator[ExampleResponse]:
        self.check(request)
        for i in range(3):
            yield ExampleResponse(
                example_integer=i,
                example_string=f"{self.instance}: {request.example_string} #{i}",
            )

    async def ExampleStreamUnary(
        self,
        request_iterator: AsyncIterator[ExampleRequest],
        context: slim_bindings.Context,
    ) -> ExampleResponse:
        seen = []
        async for request in request_iterator:
            self.check(request)
            seen.append(request.example_string)
        return ExampleResponse(
            example_integer=len(seen),
            example_string=f"{self.instance}: saw {', '.join(seen)}",
        )

    async def ExampleStreamStream(
        self,
        request_iterator: AsyncIterator[ExampleRequest],
        context: slim_bindings.Context,
    ) -> AsyncIterator[ExampleResponse]:
        async for request in request_iterator:
            self.check(request)
            yield ExampleResponse(
                example_integer=request.example_integer * 100,
                example_string=f"{self.instance}: echo {request.example_string}",
            )


async def amain(instance: str, node: str, fail_on: str | None) -> None:
    app, conn_id = await connect(instance, node)
    server = slim_bindings.Server.new_with_connection(
        app, slim_bindings.Name("agntcy", "grpc", instance), conn_id
    )
    add_TestServicer_to_server(TestService(instance, fail_on), server)
    print(f"SLIM_RPC_SERVER_READY {instance}", flush=True)
    await server.serve_async()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance", default="server", help="third name component")
    parser.add_argument("--server", default=DEFAULT_NODE, help="SLIM node endpoint")
    parser.add_argument("--fail-on", default=None, help="fail requests with this text")
    args = parser.parse_args()
    asyncio.run(amain(args.instance, args.server, args.fail_on))


if __name__ == "__main__":
    main()
