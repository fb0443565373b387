"""The delivery queue that replaces py-libp2p's 32-slot subscription channel."""

from __future__ import annotations

import trio
import trio.testing

from network.queue import DeliveryQueue


async def test_a_consumer_far_behind_loses_nothing_and_keeps_order() -> None:
    queue: DeliveryQueue[int] = DeliveryQueue("test")
    assert all(queue.put(i) for i in range(10_000))  # 300 times libp2p's 32 slots
    assert queue.high_water == 10_000
    assert [await queue.get() for _ in range(10_000)] == list(range(10_000))


async def test_at_the_cap_a_put_is_refused_not_silently_lost() -> None:
    queue: DeliveryQueue[int] = DeliveryQueue("test", max_items=3)
    assert [queue.put(i) for i in range(5)] == [True, True, True, False, False]
    assert len(queue) == 3


async def test_get_waits_for_a_put_and_close_ends_iteration_after_draining() -> None:
    queue: DeliveryQueue[str] = DeliveryQueue("test")
    got: list[str] = []

    async def consume() -> None:
        async for item in queue:
            got.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        queue.put("a")
        queue.put("b")
        queue.close()
        assert not queue.put("after close")
    assert got == ["a", "b"]
