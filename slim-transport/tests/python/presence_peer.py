"""Official slim_bindings 3.3.8 group member for session_presence_official.rs.

Arguments: mode node-url local-name shared-secret [channel].

Mode "participant": connects to the node, waits for a group invite (MLS
follows the invite), then:
  * on the moderator's message "go-offline": soft close
    (close_with_mode(SOFT)), prints PY_OFFLINE once every member acknowledged;
  * on the line "rejoin" on standard input: rejoin(), prints PY_REJOINED
    (or PY_REJOIN_FAILED <error>);
  * answers every other message m with "ack m" to the group, prints
    PY_GOT <m>;
until the session is closed (PY_CLOSED). Prints PY_READY once subscribed.

Mode "moderator": creates group `channel` with MLS and then takes lines on
standard input: "invite NAME" (prints PY_INVITED NAME once it joined),
"say TEXT" (publishes TEXT), "close" (ends the group, prints PY_CLOSED).
Every message received is printed as PY_GOT <text>.
"""

import asyncio
import datetime
import sys

import slim_bindings

WAIT = datetime.timedelta(seconds=60)


async def main() -> int:
    mode, url, local, secret = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    tracing = slim_bindings.new_tracing_config()
    tracing.log_level = "info"
    slim_bindings.initialize_with_configs(
        tracing_config=tracing,
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    service = slim_bindings.get_global_service()
    conn = await service.connect_async(slim_bindings.new_insecure_client_config(url))
    name = slim_bindings.Name.from_string(local)
    app = service.create_app_with_secret(name, secret)
    await app.subscribe_async(name, conn)
    print("PY_READY", flush=True)

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())

    loop.run_in_executor(None, read_stdin)
    if mode == "moderator":
        return await moderate(app, conn, sys.argv[5], lines)
    session = await app.listen_for_session_async(None)
    print("PY_JOINED", flush=True)

    async def commands() -> None:
        while True:
            line = await lines.get()
            if line == "rejoin":
                try:
                    await session.rejoin_and_wait_async()
                    print("PY_REJOINED", flush=True)
                except Exception as e:  # noqa: BLE001 - reported to the test
                    print(f"PY_REJOIN_FAILED {e}", flush=True)

    cmd_task = asyncio.create_task(commands())
    while True:
        try:
            msg = await session.get_message_async(timeout=WAIT)
        except Exception as e:  # noqa: BLE001 - timeouts while offline, or closed
            if "closed" in str(e).lower():
                print(f"PY_CLOSED {e}", flush=True)
                break
            continue
        text = msg.payload.decode(errors="replace")
        if text.startswith("ack "):
            continue
        if text == "go-offline":
            await session.close_with_mode_and_wait_async(slim_bindings.CloseMode.SOFT)
            print("PY_OFFLINE", flush=True)
            continue
        print(f"PY_GOT {text}", flush=True)
        await session.publish_async(f"ack {text}".encode(), None, None)
    cmd_task.cancel()
    return 0


async def moderate(app, conn, channel: str, lines: "asyncio.Queue[str]") -> int:
    config = slim_bindings.SessionConfig(
        session_type=slim_bindings.SessionType.GROUP,
        max_retries=10,
        interval=datetime.timedelta(seconds=1),
        metadata={},
        mls_settings=slim_bindings.MlsSettings(
            header_integrity_validation_percent=100,
            max_seen_control_message_ids_size=None,
        ),
    )
    created = await app.create_session_async(
        config, slim_bindings.Name.from_string(channel)
    )
    await created.completion.wait_async()
    session = created.session
    print("PY_CREATED", flush=True)

    async def receive() -> None:
        while True:
            try:
                msg = await session.get_message_async(timeout=WAIT)
            except Exception as e:  # noqa: BLE001 - timeouts, or closed
                if "closed" in str(e).lower():
                    return
                continue
            print(f"PY_GOT {msg.payload.decode(errors='replace')}", flush=True)

    rx = asyncio.create_task(receive())
    while True:
        line = await lines.get()
        if line.startswith("invite "):
            who = line[len("invite ") :]
            await app.set_route_async(slim_bindings.Name.from_string(who), conn)
            handle = await session.invite_async(slim_bindings.Name.from_string(who))
            await handle.wait_async()
            print(f"PY_INVITED {who}", flush=True)
        elif line.startswith("say "):
            await session.publish_async(line[len("say ") :].encode(), None, None)
        elif line == "close":
            handle = await app.delete_session_async(session)
            await handle.wait_async()
            rx.cancel()
            print("PY_CLOSED", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
