"""The gateway's own Redis client: the few commands it sends, over RESP, on asyncio.

Why not redis-py: a worker imports it for 6-8 MiB (its command, cluster and module classes,
and the OpenTelemetry SDK whenever that is installed), and each command goes through its
connection pool, about 85 µs of CPU. The gateway needs EVALSHA, SCRIPT LOAD, PING, PUBLISH
and SUBSCRIBE, on one server found by URL or through Sentinel; hiredis parses and packs
RESP in C. One connection carries every command, pipelined (replies come back in order),
which is also what Redis serves best.

- address.py: REDIS_URL read into where to connect and how to log in;
- connection.py: one connection, its replies matched to their commands in order, and
  every command's deadline;
- client.py: the connection kept open (opened again after a failure, the primary asked of
  the sentinels each time);
- subscription.py: a pub/sub connection that subscribes again after it was lost.
"""
