"""The audit trail: every change and button press, who, where, words, outcome, duration.

Entries go to a capped Redis stream (`<state prefix>:audit`, about 10,000 entries) and to
whoever subscribed (the Slack transport posts them to AUDIT_CHANNEL, an incident channel's
timeline). Words are redacted before they are stored: a token pasted into a command never
reaches Redis, Slack or logs. An audit write that fails is logged and never fails the
command it describes.

Reads that went well (a snapshot, `dlq list`: what a viewer may run) are not recorded unless
QUEUEOPS_AUDIT_READS is true: the write would double what a snapshot costs Redis, and a
trail of who looked is rarely what an audit is for. A read that failed or was refused is
recorded like a change.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel, field_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.urls import hide_url_credentials

log = logging.getLogger(__name__)

AUDIT_MAXLEN = 10_000
_SECRET_VALUE = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|\b[a-fA-F0-9]{32,}\b|\b[A-Za-z0-9+/_-]{40,}\b)"
)
# fullmatch and DOTALL: "--password=x\ny" is a flag with a value too, not free text.
_SECRET_FLAG = re.compile(r"--?(token|secret|password|key)(=.*)?", re.IGNORECASE | re.DOTALL)
_SECRET_FLAG_IN_TEXT = re.compile(r"(--?(?:token|secret|password|key)[ =])\S+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """A free-text line (an error message that quotes the words) with secrets replaced,
    URLs among them (`redis://:pw@host` shows as `redis://host`)."""
    text = hide_url_credentials(text)
    return _SECRET_VALUE.sub("[redacted]", _SECRET_FLAG_IN_TEXT.sub(r"\1[redacted]", text))


def redact_words(words: Sequence[str]) -> str:
    """The words as one line, with anything that looks like a secret replaced."""
    out: list[str] = []
    hide_next = False
    for word in words:
        if hide_next:
            out.append("[redacted]")
            hide_next = False
            continue
        flag = _SECRET_FLAG.fullmatch(word)
        if flag:
            out.append(word.split("=", 1)[0] + ("=[redacted]" if flag.group(2) else ""))
            hide_next = flag.group(2) is None
            continue
        out.append(_SECRET_VALUE.sub("[redacted]", hide_url_credentials(word)))
    return " ".join(out)


class AuditEntry(BaseModel):
    at_ms: int
    actor: str
    role: str
    transport: str
    channel: str | None = None
    words: str
    command: str | None
    outcome: str
    message: str | None = None
    duration_ms: int
    jobs: dict[str, int] | None = None
    """The jobs the command moved, by what happened to them ({"quarantined": 3}); None when
    it moved none (a read, a preview, a dry run). Stored as JSON in the stream."""

    @field_validator("jobs", mode="before")
    @classmethod
    def _stored(cls, value: object) -> object:
        """As the stream keeps it (a JSON object), read back (`recent`)."""
        return json.loads(value) if isinstance(value, str) else value


AuditListener = Callable[[AuditEntry], Awaitable[None]]


class AuditLog:
    def __init__(
        self, redis: Redis, key: str, *, maxlen: int = AUDIT_MAXLEN, audit_reads: bool = False
    ) -> None:
        self.redis = redis
        self.key = key
        self.maxlen = maxlen
        self.audit_reads = audit_reads
        self.listeners: list[AuditListener] = []

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    async def record(
        self, entry: AuditEntry, *, redis_down: bool = False, read: bool = False
    ) -> None:
        """Store the entry and tell the listeners. `redis_down`: the command just failed on
        Redis, so only the listeners hear of it (a write would fail, and slowly). `read`: a
        command that changed nothing and went well; dropped unless reads are audited."""
        if read and not self.audit_reads:
            return
        fields = {
            k: json.dumps(v) if isinstance(v, dict) else str(v)
            for k, v in entry.model_dump().items()
            if v is not None
        }
        if not redis_down:
            try:
                await self.redis.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            except (RedisError, OSError) as err:
                log.warning("audit: could not write to %s: %s", self.key, err)
        for listener in self.listeners:
            try:
                await listener(entry)
            except Exception as err:  # a listener (Slack) failing must not fail the command
                log.warning("audit: listener failed: %s", err)

    async def record_move(
        self, actor: str, role: str, channel: str | None, words: str, outcome: str
    ) -> None:
        """A Slack move that ran no command (a button press refused or cancelled, a
        shortcut: `words` says which, e.g. "[button] cancel drain"), audited as commands
        are."""
        await self.record(
            AuditEntry(
                at_ms=self.now_ms(),
                actor=actor,
                role=role,
                transport="slack",
                channel=channel or None,
                words=words,
                command=None,
                outcome=outcome,
                duration_ms=0,
            )
        )

    async def recent(self, count: int = 20) -> list[AuditEntry]:
        rows = await self.redis.xrevrange(self.key, count=count) or []
        return [AuditEntry.model_validate(fields) for _id, fields in rows if fields]
