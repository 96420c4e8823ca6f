"""What the Redis client raises: RedisError for every failure, split by what it means."""

from __future__ import annotations


class RedisError(Exception):
    """Redis could not do what was asked (unreachable, too slow, or it said no)."""


class RedisConnectionError(RedisError):
    """No connection, or it was lost or timed out: the command's outcome is unknown."""


class ReplyError(RedisError):
    """Redis answered with an error."""


class NoScriptError(ReplyError):
    """EVALSHA of a script Redis does not hold (it restarted, or SCRIPT FLUSH ran)."""


class ReadOnlyError(ReplyError):
    """A write reached a replica: the server was demoted (a failover)."""


def reply_error(message: str) -> ReplyError:
    """The error for one of Redis's error replies, by its code (the first word)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("READONLY"):
        return ReadOnlyError(message)
    return ReplyError(message)
