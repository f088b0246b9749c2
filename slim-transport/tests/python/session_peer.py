"""Official slim_bindings 1.3.0 app used by session_interop_python.rs.

Connects to the Rust node at 127.0.0.1:<port>, names itself org/ns/py, and
plays one role. Arguments: port mode n [mls|plain] [name]; MLS is off
unless the fourth argument is "mls" (then sessions it creates enable MLS;
sessions it joins follow the JOIN_REQUEST), the name defaults to org/ns/py.
  accept    - waits for a P2P session, echoes N messages ("ping i" -> "pong i"),
              then waits until the peer closes the session.
  initiate  - creates a P2P session to org/ns/rusty, sends N pings, checks the
              pongs, deletes the session.
  group     - waits for a group invite; for each of N+1 messages from the
              moderator answers with publish_to (PUBLISH_TO) and publish
              (to the channel); then waits until the session is closed.
  moderate  - creates group org/ns/pychat, invites org/ns/rust0 and
              org/ns/rust1, broadcasts N messages, expects from each member
              one "ack <text>" per message, stays idle past three ping
              rounds, broadcasts "still there?" and expects one answer from
              each member, then closes the session.
  mlsmoderate - creates group org/ns/pychat, invites org/ns/rust0 and
              org/ns/py2 (an official participant), broadcasts N messages
              "m<i>", expects "ack m<i>" from each member, closes the session.
  member    - waits for a group invite; answers each of N messages "m<i>"
              from the moderator with "ack m<i>" to the channel (ignoring
              other members' acks), then until the session is closed (or it
              is removed) answers a message "final" with "ack final".
Prints PY_READY when subscribed and PY_DONE on success; exits 1 on failure.
"""

import asyncio
import datetime
import sys

import slim_bindings

SECRET = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas"
WAIT = datetime.timedelta(seconds=60)


async def wait_closed(session, answer_final: bool = False) -> None:
    # get_message raises once the session is closed by the peer. With
    # answer_final, a message "final" is answered with "ack final".
    for _ in range(1000):
        try:
            msg = await session.get_message_async(timeout=WAIT)
        except Exception as e:  # noqa: BLE001 - any error means closed here
            print(f"PY_CLOSED {e}", flush=True)
            return
        if answer_final and msg.payload == b"final":
            await session.publish_async(b"ack final", None, None)
    raise RuntimeError("session never closed")


async def main(port: int, mode: str, n: int, mls: bool, own: str) -> None:
    slim_bindings.initialize_with_configs(
        tracing_config=slim_bindings.new_tracing_config(),
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    service = slim_bindings.get_global_service()
    conn = await service.connect_async(
        slim_bindings.new_insecure_client_config(f"http://127.0.0.1:{port}")
    )
    name = slim_bindings.Name.from_string(own)
    app = service.create_app_with_secret(name, SECRET)
    await app.subscribe_async(name, conn)
    print(f"PY_READY {app.id():x}", flush=True)

    if mode == "accept":
        session = await app.listen_for_session_async(WAIT)
        for _ in range(n):
            msg = await session.get_message_async(timeout=WAIT)
            await session.publish_async(b"pong " + msg.payload[5:], None, None)
        await wait_closed(session)
    elif mode == "initiate":
        remote = slim_bindings.Name.from_string("org/ns/rusty")
        await app.set_route_async(remote, conn)
        config = slim_bindings.SessionConfig(
            session_type=slim_bindings.SessionType.POINT_TO_POINT,
            enable_mls=mls,
            max_retries=10,
            interval=datetime.timedelta(seconds=1),
            metadata={"origin": "python"},
        )
        ctx = await app.create_session_async(config, remote)
        await ctx.completion.wait_async()
        session = ctx.session
        for i in range(n):
            await session.publish_async(f"ping {i}".encode(), None, None)
            msg = await session.get_message_async(timeout=WAIT)
            if msg.payload != f"pong {i}".encode():
                raise RuntimeError(f"unexpected reply {msg.payload!r}")
        handle = await app.delete_session_async(session)
        await handle.wait_async()
    elif mode == "group":
        session = await app.listen_for_session_async(WAIT)
        for _ in range(n + 1):
            msg = await session.get_message_async(timeout=WAIT)
            text = msg.payload.decode()
            await session.publish_to_async(
                msg.context, f"direct {text}".encode(), None, None
            )
            await session.publish_async(f"all {text}".encode(), None, None)
        await wait_closed(session)
    elif mode == "moderate":
        config = slim_bindings.SessionConfig(
            session_type=slim_bindings.SessionType.GROUP,
            enable_mls=mls,
            max_retries=10,
            interval=datetime.timedelta(seconds=1),
            metadata={},
        )
        ctx = await app.create_session_async(
            config, slim_bindings.Name.from_string("org/ns/pychat")
        )
        await ctx.completion.wait_async()
        session = ctx.session
        for member in ("org/ns/rust0", "org/ns/rust1"):
            invitee = slim_bindings.Name.from_string(member)
            await app.set_route_async(invitee, conn)
            handle = await session.invite_async(invitee)
            await handle.wait_async()
        print("PY_INVITED", flush=True)
        for i in range(n):
            await session.publish_async(f"m{i}".encode(), None, None)
        acks = [
            (await session.get_message_async(timeout=WAIT)).payload
            for _ in range(2 * n)
        ]
        want = sorted([f"ack m{i}".encode() for i in range(n)] * 2)
        if sorted(acks) != want:
            raise RuntimeError(f"unexpected acks {acks!r}")
        await asyncio.sleep(35)
        await session.publish_async(b"still there?", None, None)
        for _ in range(2):
            msg = await session.get_message_async(timeout=WAIT)
            if msg.payload != b"yes":
                raise RuntimeError(f"unexpected answer {msg.payload!r}")
        handle = await app.delete_session_async(session)
        await handle.wait_async()
    elif mode == "mlsmoderate":
        config = slim_bindings.SessionConfig(
            session_type=slim_bindings.SessionType.GROUP,
            enable_mls=mls,
            max_retries=10,
            interval=datetime.timedelta(seconds=1),
            metadata={},
        )
        ctx = await app.create_session_async(
            config, slim_bindings.Name.from_string("org/ns/pychat")
        )
        await ctx.completion.wait_async()
        session = ctx.session
        for member in ("org/ns/rust0", "org/ns/py2"):
            invitee = slim_bindings.Name.from_string(member)
            await app.set_route_async(invitee, conn)
            handle = await session.invite_async(invitee)
            await handle.wait_async()
        print("PY_INVITED", flush=True)
        for i in range(n):
            await session.publish_async(f"m{i}".encode(), None, None)
        acks = [
            (await session.get_message_async(timeout=WAIT)).payload
            for _ in range(2 * n)
        ]
        want = sorted([f"ack m{i}".encode() for i in range(n)] * 2)
        if sorted(acks) != want:
            raise RuntimeError(f"unexpected acks {sorted(acks)[:4]!r}...")
        handle = await app.delete_session_async(session)
        await handle.wait_async()
    elif mode == "member":
        session = await app.listen_for_session_async(WAIT)
        got = 0
        while got < n:
            msg = await session.get_message_async(timeout=WAIT)
            text = msg.payload.decode()
            if not text.startswith("m"):
                continue
            if text != f"m{got}":
                raise RuntimeError(f"out of order: {text} for m{got}")
            got += 1
            await session.publish_async(f"ack {text}".encode(), None, None)
        await wait_closed(session, answer_final=True)
    else:
        raise RuntimeError(f"unknown mode {mode}")
    print("PY_DONE", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(
            main(
                int(sys.argv[1]),
                sys.argv[2],
                int(sys.argv[3]),
                len(sys.argv) > 4 and sys.argv[4] == "mls",
                sys.argv[5] if len(sys.argv) > 5 else "org/ns/py",
            )
        )
    except Exception as e:  # noqa: BLE001
        print(f"PY_FAILED {e!r}", flush=True)
        sys.exit(1)
