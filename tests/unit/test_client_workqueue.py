"""The work queue keeps client-go's contract: dedup, one worker per key, dirty requeue, delays,
per-key exponential backoff, shutdown."""

import asyncio

import pytest

from cluster.client.workqueue import ExponentialRateLimiter, WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def _nothing_within(queue, seconds=0.05):
    try:
        key = await asyncio.wait_for(queue.get(), seconds)
    except asyncio.TimeoutError:
        return True
    pytest.fail(f"the queue handed out {key!r}, expected nothing")


def test_a_key_added_many_times_is_queued_once_in_first_added_order():
    async def body():
        q = WorkQueue()
        for key in ("a", "b", "a", "c", "b"):
            q.add(key)
        assert len(q) == 3
        assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    run(body())


def test_a_key_being_processed_is_not_handed_to_a_second_worker_and_is_requeued_after_done():
    async def body():
        q = WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")  # changed while a worker reconciles it: dirty
        q.add("a")
        assert len(q) == 0
        assert await _nothing_within(q)
        q.done("a")
        assert len(q) == 1 and await q.get() == "a"
        q.done("a")
        assert await _nothing_within(q)  # not dirty any more: done for good
    run(body())


def test_parallel_workers_never_process_one_key_at_the_same_time():
    async def body():
        q = WorkQueue()
        active, overlaps, handled = set(), [], []

        async def worker():
            while (key := await q.get()) is not None:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                await asyncio.sleep(0.002)
                active.discard(key)
                handled.append(key)
                q.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        for i in range(200):
            q.add(f"k{i % 5}")
            await asyncio.sleep(0)
        q.shutdown()  # workers drain what is queued, dirty keys included, then stop
        await asyncio.gather(*workers)
        assert overlaps == []
        assert set(handled) == {f"k{i}" for i in range(5)}
        assert len(handled) < 200  # adds while queued or processing collapsed
    run(body())


def test_add_after_queues_later_and_the_earliest_time_wins():
    async def body():
        q = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        q.add_after("a", 0.3)
        q.add_after("a", 0.05)   # earlier: replaces
        q.add_after("a", 0.2)    # later: ignored
        assert len(q) == 0
        assert await q.get() == "a"
        assert 0.04 <= loop.time() - start < 0.2
        q.done("a")
        assert await _nothing_within(q, 0.3)  # the 0.2 s and 0.3 s requests left no copies
    run(body())


def test_rate_limited_requeues_back_off_exponentially_per_key_until_forgotten():
    limiter = ExponentialRateLimiter()
    delays = [limiter.when("a") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert limiter.when("b") == pytest.approx(0.005)  # per key
    for _ in range(40):
        limiter.when("a")
    assert limiter.when("a") == 1000.0  # capped
    assert limiter.num_requeues("a") == 46
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0 and limiter.when("a") == pytest.approx(0.005)


def test_add_rate_limited_delays_the_key_by_its_backoff():
    async def body():
        q = WorkQueue(ExponentialRateLimiter(base=0.02, maximum=1.0))
        loop = asyncio.get_running_loop()
        waits = []
        for _ in range(3):
            start = loop.time()
            q.add_rate_limited("a")
            key = await q.get()
            waits.append(loop.time() - start)
            q.done(key)
        assert q.num_requeues("a") == 3
        assert waits[0] >= 0.015 and waits[1] >= 0.035 and waits[2] >= 0.075
        q.forget("a")
        assert q.num_requeues("a") == 0
    run(body())


def test_shutdown_wakes_waiting_workers_and_refuses_new_keys_after_the_queue_drains():
    async def body():
        q = WorkQueue()
        waiting = [asyncio.create_task(q.get()) for _ in range(3)]
        await asyncio.sleep(0)
        q.add_after("late", 10)
        q.shutdown()
        assert await asyncio.gather(*waiting) == [None, None, None]
        q.add("x")
        assert len(q) == 0 and await q.get() is None
    run(body())


def test_keys_queued_before_shutdown_are_still_handed_out():
    async def body():
        q = WorkQueue()
        q.add("a")
        q.shutdown()
        assert await q.get() == "a"
        assert await q.get() is None
    run(body())
