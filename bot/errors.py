"""The few kinds of failure queueops reports, each mapped to one exit code.

Every error that reaches a user is one clear line naming the culprit (the variable, the
queue, the job id, host:port). Transports catch `QueueOpsError` and print `str(err)`;
anything else is a bug and is logged with its traceback.
"""

from __future__ import annotations


class QueueOpsError(Exception):
    """Base of every error meant for the user; `exit_code`: 1 failed, 2 usage/configuration."""

    exit_code = 1


class UsageError(QueueOpsError):
    """The words of a command are wrong (unknown option, bad value): exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """An environment variable has a bad value: exit 2, before anything runs."""


class OperationFailed(QueueOpsError):
    """The command was understood but could not be done (job not found, refused): exit 1."""


class NotFound(OperationFailed):
    """A queue or job the user named does not exist."""


class Refused(OperationFailed):
    """The operation would be unsafe (an active job, an id collision) and was not done."""


class RedisUnavailable(OperationFailed):
    """Redis did not answer; the message names host:port."""


class DatabaseUnavailable(OperationFailed):
    """PostgreSQL (the DB-backed queue) did not answer; the message names host:port/db."""


class Ambiguous(UsageError):
    """A short queue name that exists under two prefixes: the message lists the full names."""


QUOTA_TEXT = "max requests limit exceeded"
"""What Upstash's Redis answers once a plan's requests are used up (`ERR max requests limit
exceeded. Limit: 500000, Usage: 500000.`): no command works until the month turns over."""


class RedisQuotaExhausted(RedisUnavailable):
    """Redis answered that the plan's request quota is used up: the message names the cause
    and the fixes, never a bare "Redis error"."""

    @classmethod
    def matches(cls, err: BaseException) -> bool:
        """True for Redis's quota answer, as a ResponseError or wrapped in a connection
        error (a handshake command refused the same way)."""
        return QUOTA_TEXT in str(err).lower()

    @classmethod
    def for_location(cls, location: str, err: BaseException) -> RedisQuotaExhausted:
        detail = str(err).splitlines()[0].strip() if str(err) else QUOTA_TEXT
        return cls(
            f"Redis at {location} has used up its request quota ({detail}: Upstash's "
            "free-tier limit); nothing works until it resets. Fix: cron mode (`mode cron`; "
            "`budget` shows its Redis commands a month) or a paid plan"
        )
