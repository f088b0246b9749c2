"""Connects an example program to a SLIM node (shared by server.py and the clients).

The stubs (``example_pb2_slimrpc``) are generated from ``examples/example.proto`` by
protoc-gen-slimrpc-python; see ``README.md`` next to this file.
"""

from __future__ import annotations

import asyncio

import slim_bindings

NAME_ORG = "agntcy"
NAME_NS = "grpc"
SHARED_SECRET = "my_shared_secret_for_testing_purposes_only"
DEFAULT_NODE = "http://127.0.0.1:46357"


async def connect(instance: str, node: str) -> tuple[slim_bindings.App, int]:
    """Creates the app ``agntcy/grpc/<instance>`` connected to ``node``."""
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())  # type: ignore[arg-type]
    tracing = slim_bindings.new_tracing_config()
    tracing.log_level = "warn"
    slim_bindings.initialize_with_configs(
        tracing_config=tracing,
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    service = slim_bindings.get_global_service()
    local_name = slim_bindings.Name(NAME_ORG, NAME_NS, instance)
    conn_id = await service.connect_async(
        slim_bindings.new_insecure_client_config(node)
    )
    app = service.create_app_with_secret(local_name, SHARED_SECRET)
    await app.subscribe_async(local_name, conn_id)
    return app, conn_id


def member(instance: str) -> slim_bindings.Name:
    """The SLIM name of a server instance."""
    return slim_bindings.Name(NAME_ORG, NAME_NS, instance)
