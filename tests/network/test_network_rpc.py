"""Request/response sessions over one stream, against trio's in-memory stream pair."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from network.errors import ConnectionLost, FrameError, FrameTooLarge, RemoteError, RequestTimeout
from network.framing import encode_frame, encode_uvarint
from network.rpc import REQUEST, ClientSession, Refused, ServerLimits, pack, serve_session

Handler = Callable[[bytes], Awaitable[bytes]]


class Pair:
    def __init__(self, client: ClientSession, server_done: trio.Event) -> None:
        self.client = client
        self.server_done = server_done
        self.server_error: BaseException | None = None


async def run_pair(
    nursery: trio.Nursery, handler: Handler, *, max_request: int = 4096, max_inflight: int = 16
) -> Pair:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = ClientSession(client_stream, max_response=1 << 20)
    pair = Pair(client, trio.Event())

    async def server() -> None:
        try:
            limits = ServerLimits(max_request=max_request, max_inflight=max_inflight)
            await serve_session(server_stream, handler, limits)
        except FrameError as exc:
            pair.server_error = exc
        finally:
            await server_stream.aclose()
            pair.server_done.set()

    nursery.start_soon(server)
    nursery.start_soon(client.run)
    return pair


async def echo(body: bytes) -> bytes:
    return b"re:" + body


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def test_concurrent_requests_get_their_own_answers_out_of_order(nursery: trio.Nursery) -> None:
    async def slow_echo(body: bytes) -> bytes:
        await trio.sleep(0.001 * (20 - int(body)))  # later requests finish first
        return b"re:" + body

    pair = await run_pair(nursery, slow_echo)
    answers: dict[int, bytes] = {}

    async def one(i: int) -> None:
        answers[i] = await pair.client.call(str(i).encode(), timeout=5)

    async with trio.open_nursery() as calls:
        for i in range(20):
            calls.start_soon(one, i)
    assert answers == {i: f"re:{i}".encode() for i in range(20)}


async def test_a_timed_out_request_does_not_desynchronise_the_stream(nursery: trio.Nursery) -> None:
    gate = trio.Event()

    async def first_is_stuck(body: bytes) -> bytes:
        if body == b"stuck":
            await gate.wait()
        return b"re:" + body

    pair = await run_pair(nursery, first_is_stuck)
    with pytest.raises(RequestTimeout):
        await pair.client.call(b"stuck", timeout=0.2)
    gate.set()  # its late answer arrives now and must be discarded
    assert await pair.client.call(b"next", timeout=5) == b"re:next"
    assert pair.client.closed is None


async def test_handler_errors_become_error_frames_and_the_session_goes_on(nursery: trio.Nursery) -> None:
    async def picky(body: bytes) -> bytes:
        if body == b"boom":
            raise ValueError("handler bug")
        if body == b"no":
            raise Refused("task_unknown: never heard of it")
        return b"ok"

    pair = await run_pair(nursery, picky)
    with pytest.raises(RemoteError, match="internal error"):
        await pair.client.call(b"boom", timeout=5)
    with pytest.raises(RemoteError) as info:
        await pair.client.call(b"no", timeout=5)
    assert info.value.reason == "task_unknown: never heard of it"
    assert await pair.client.call(b"fine", timeout=5) == b"ok"


async def test_an_oversized_request_ends_the_session(nursery: trio.Nursery) -> None:
    pair = await run_pair(nursery, echo, max_request=100)
    with pytest.raises(ConnectionLost):
        await pair.client.call(b"x" * 1000, timeout=5)
    await pair.server_done.wait()
    assert isinstance(pair.server_error, FrameTooLarge)
    with pytest.raises(ConnectionLost):  # the session is dead for good
        await pair.client.call(b"small", timeout=5)


async def test_in_flight_handlers_are_capped_per_stream(nursery: trio.Nursery) -> None:
    running = 0
    peak = 0

    async def busy(body: bytes) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0.01)
        running -= 1
        return body

    pair = await run_pair(nursery, busy, max_inflight=3)
    async with trio.open_nursery() as calls:
        for i in range(12):
            calls.start_soon(pair.client.call, str(i).encode())
    assert peak == 3


async def test_server_refuses_frames_that_are_not_requests() -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(encode_frame(b"\x07" + bytes(8)))  # unknown frame type
    with pytest.raises(FrameError, match="unknown frame type"):
        await serve_session(server, echo, ServerLimits(max_request=100))
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(encode_uvarint(3) + b"abc")  # shorter than the header
    with pytest.raises(FrameError, match="shorter"):
        await serve_session(server, echo, ServerLimits(max_request=100))
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(pack(REQUEST, 1, b"hi"))
    await client.send_stream.aclose()
    await serve_session(server, echo, ServerLimits(max_request=100))  # clean end after answering


async def test_waiting_calls_fail_when_the_stream_closes(nursery: trio.Nursery) -> None:
    async def never(body: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = ClientSession(client_stream, max_response=100)
    nursery.start_soon(client.run)
    async with trio.open_nursery() as inner:
        inner.start_soon(serve_session, server_stream, never, ServerLimits(max_request=100))
        with trio.move_on_after(0.2):
            await client.call(b"hello")
        inner.cancel_scope.cancel()
    await server_stream.aclose()
    with pytest.raises(ConnectionLost):
        await client.call(b"again", timeout=5)


class _Breaks:
    """A server stream whose reads fail the way a libp2p stream does when the peer vanishes."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        raise ConnectionLost("stream reset by the peer")

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_stream_that_breaks_mid_session_raises_connection_lost_itself_not_a_group() -> None:
    with pytest.raises(ConnectionLost, match="reset by the peer"):
        await serve_session(_Breaks(), echo, ServerLimits(max_request=4096))  # type: ignore[arg-type]
