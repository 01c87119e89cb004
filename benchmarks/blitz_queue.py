"""blitz_queue: DatabaseServer.queue / queue_many on Redis against raw redis-py LPUSH.

Redis is one server whatever the SQL backend, so the case runs once per invocation
(with the first backend) and reports backend ``redis``. Every key is under a unique
prefix and deleted afterwards.
"""

from __future__ import annotations

import os
import uuid

import redis

from dblayer.stores.blitz import DatabaseServer

from .runner import Context, Result, measure

REDIS_URL = os.environ.get("DBLAYER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MESSAGES = 100_000
TARGET = 1.3
CHUNK = 10_000  # values per LPUSH in the raw pipeline, as queue_many sends them
_ran: list[str] = []


def run(ctx: Context) -> None:
    """Time queue() one by one and queue_many() against lpush and a pipelined lpush."""
    if _ran:
        print(f"blitz_queue      redis: ran already with {_ran[0]}", flush=True)
        return
    _ran.append(ctx.backend.name)
    n = ctx.n(MESSAGES)
    messages = [f'{{"time": {i}, "id": "speed", "value": {i % 97}}}' for i in range(n)]
    prefix = f"bench_blitz_{uuid.uuid4().hex[:12]}:"
    server = DatabaseServer(REDIS_URL, prefix=prefix)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        server.start_session()
        key = f"{prefix}session_{server.session_id}"

        def reset() -> None:
            client.delete(key)

        def ours_one() -> None:
            queue = server.queue
            for message in messages:
                queue(message)

        def raw_one() -> None:
            lpush = client.lpush
            for message in messages:
                lpush(key, message)

        def raw_many() -> None:
            pipe = client.pipeline(transaction=True)
            for start in range(0, n, CHUNK):
                pipe.lpush(key, *messages[start : start + CHUNK])
            pipe.execute()

        for name, ours, raw in (
            ("blitz_queue", ours_one, raw_one),
            ("blitz_queue_many", lambda: server.queue_many(messages), raw_many),
        ):
            ours_s, raw_s = measure(ctx, ours, raw, reset=reset)
            reset()
            ours()
            stored = client.llen(key)
            if stored != n or client.lindex(key, 0) != messages[-1]:
                raise AssertionError(f"{name}: {stored} messages stored, expected {n}")
            ctx.report(Result(name, "redis", ours_s, raw_s, n, "msgs", TARGET))
    finally:
        server.flush()
        leftovers = list(client.scan_iter(match=prefix + "*", count=1000))
        if leftovers:
            client.delete(*leftovers)
        client.close()
