"""Length-prefixed frames: the limit is checked on the header alone, a started frame must finish in time."""

from __future__ import annotations

import pytest
import trio

from network.errors import FrameError, FrameTimeout, FrameTooLarge
from network.framing import FrameReader, decode_uvarint, encode_frame, encode_uvarint


class ScriptedStream:
    """Serves the given chunks one per receive, then blocks forever (or ends, if `eof`)."""

    def __init__(self, chunks: list[bytes], *, eof: bool = False) -> None:
        self.chunks = list(chunks)
        self.eof = eof
        self.served = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.served += len(chunk)
            return chunk
        if self.eof:
            return b""
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("the reader never writes")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**14, 2**21 - 1, 2**28, 2**35 - 1])
def test_uvarint_round_trip(value: int) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + b"tail") == (value, len(encoded))
    assert decode_uvarint(encoded[:-1]) is None


def test_uvarint_refuses_non_minimal_and_overlong_prefixes() -> None:
    with pytest.raises(FrameError, match="non-minimal"):
        decode_uvarint(b"\x80\x00")
    with pytest.raises(FrameError, match="longer than 5"):
        decode_uvarint(b"\xff\xff\xff\xff\xff\x01")


async def test_frames_split_across_reads_are_reassembled() -> None:
    wire = encode_frame(b"alpha") + encode_frame(b"") + encode_frame(b"x" * 1000)
    chunks = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    reader = FrameReader(ScriptedStream(chunks, eof=True), max_frame=1000)
    assert [await reader.read_frame() for _ in range(3)] == [b"alpha", b"", b"x" * 1000]
    assert await reader.read_frame() is None  # clean end between frames


async def test_oversized_header_is_refused_before_any_body_is_read() -> None:
    # The body never arrives: if the reader tried to read it, this would hang.
    stream = ScriptedStream([encode_uvarint(50 * 2**20)])
    reader = FrameReader(stream, max_frame=4096, frame_timeout=60)
    with trio.fail_after(5), pytest.raises(FrameTooLarge) as info:
        await reader.read_frame()
    assert (info.value.size, info.value.limit) == (50 * 2**20, 4096)
    assert stream.served == len(encode_uvarint(50 * 2**20))


async def test_a_stalled_frame_times_out(autojump_clock: trio.abc.Clock) -> None:
    stream = ScriptedStream([encode_uvarint(100) + b"only ten b"])
    reader = FrameReader(stream, max_frame=1000, frame_timeout=5)
    start = trio.current_time()
    with pytest.raises(FrameTimeout):
        await reader.read_frame()
    assert trio.current_time() - start == pytest.approx(5)


async def test_idle_time_between_frames_is_not_limited(autojump_clock: trio.abc.Clock) -> None:
    class SlowStart(ScriptedStream):
        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            if not self.served:
                await trio.sleep(3600)  # a persistent stream idles for an hour
            return await super().receive_some(max_bytes)

    reader = FrameReader(SlowStart([encode_frame(b"late but fine")]), max_frame=100, frame_timeout=1)
    assert await reader.read_frame() == b"late but fine"


async def test_stream_ending_inside_a_frame_is_an_error() -> None:
    reader = FrameReader(ScriptedStream([encode_uvarint(10) + b"abc"], eof=True), max_frame=100)
    with pytest.raises(FrameError, match="3 of 10"):
        await reader.read_frame()
