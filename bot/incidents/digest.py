"""The daily digest (INCIDENT_DIGEST_AT, posted to INCIDENT_UPDATES_CHANNEL): the open
incidents, the incidents opened in the last 24 h and resolved since (how long each lasted,
on which queues), and the queues that were backlogged in the last 24 h, with their depth now.

"Backlogged in the last 24 h" is read from the incidents themselves: the queues named by
every incident open at any moment of the last 24 h (an alert, the watcher, a declaration).
Those are the open ones, and the recent ones (`Incidents.recent_key`, a sorted set by
opening time kept by bot/incidents/channels.py, so no SCAN) resolved within the day; an
incident opened more than RECENT_KEEP_MS before and resolved today is not among them,
which a daily digest can afford.

What it costs Redis. The digest rides on the tick as a hook, and an idle tick pays nothing
for it: the hook compares the local clock with the next due time it computed in-process
and touches Redis only when that time has passed. Then it claims the day with SET NX on
`<state>:digest:<YYYY-MM-DD>` (kept CLAIM_S), so of several replicas one posts; a post that
fails gives the claim back and the next tick tries again. The first due time of a process
is today's, passed or not: a bot (re)started after the time posts that day's digest once if
no replica did (the claim says), and goes on to tomorrow's otherwise.

Slack's modules are imported where the digest runs only: the settings validate
INCIDENT_DIGEST_AT with this module, and the CLI imports no slack_sdk (tests/test_cli.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

from bot.durations import humanize_age_ms

if TYPE_CHECKING:
    from slack_sdk.models.blocks import Block
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.dispatch import Dispatcher
    from bot.incidents.channels import Incidents
    from bot.queues.models import ProbeResult, QueueSnapshot

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
CLAIM_S = 2 * 86_400
"""How long a day's claim is kept: past that day, so no replica posts it again."""
RECENT_READ = 200
"""Recent incidents read at most (newest first)."""
RESOLVED_SHOWN = 30
QUEUES_SHOWN = 30
OPEN_SHOWN = 15
"""Open incidents shown in the digest: a message allows 50 blocks, each one takes one."""


def parse_digest_at(text: str) -> dtime | None:
    """ "09:00" -> 09:00 UTC; blank: no digest. One line on a mistake (shown at start)."""
    value = text.strip()
    if not value:
        return None
    hours, colon, minutes = value.partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{value[:40]!r} is not a time of day as HH:MM (e.g. 09:00, UTC)")
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise ValueError(f"{value[:40]!r} is not a time of day (00:00 to 23:59, UTC)")
    return dtime(int(hours), int(minutes), tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def matching(snaps: Sequence[QueueSnapshot], name: str) -> QueueSnapshot | None:
    """The queue an incident names: by how replies show it, its name, or its full name."""
    return next((q for q in snaps if name in (q.shown, q.name, q.full)), None)


def digest_blocks(
    day: date,
    now: int,
    opened: tuple[list[dict[str, Any]], int] | str,
    resolved: list[dict[str, Any]] | str,
    queues: list[str],
    snaps: list[QueueSnapshot] | str,
) -> tuple[str, list[Block]]:
    """The message: (its fallback text, its blocks, at most 50). A part given as a string is
    the one line saying why it could not be read."""
    from slack_sdk.models.blocks import (
        ContextBlock,
        DividerBlock,
        HeaderBlock,
        MarkdownTextObject,
    )

    from bot.slack.blocks import escape
    from bot.slack.home import MARK_EMOJI_ERROR, depth, incident_blocks, packed

    blocks: list[Block] = [HeaderBlock(text=f"Daily digest, {day.isoformat()}")]
    if isinstance(opened, str):
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"{MARK_EMOJI_ERROR} {opened}")])
        )
        open_count = "?"
    else:
        incidents, total = opened
        open_count = str(total)
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=f"*Open incidents ({total})*")])
        )
        blocks += incident_blocks(incidents, total, now, shown=OPEN_SHOWN)
    blocks.append(DividerBlock())
    if isinstance(resolved, str):
        lines = [f"{MARK_EMOJI_ERROR} {resolved}"]
        resolved_count = "?"
    else:
        resolved_count = str(len(resolved))
        lines = [f"*Resolved, opened in the last 24 h ({len(resolved)})*"]
        for i in resolved[:RESOLVED_SHOWN]:
            lasted = humanize_age_ms((i["resolved_at"] or 0) - (i["opened_at"] or 0))
            on = f" on {escape(', '.join(i['queues']))}" if i["queues"] else ""
            lines.append(f":white_check_mark: *{escape(i['title'])}*{on} · lasted {lasted}")
        if len(resolved) > RESOLVED_SHOWN:
            lines.append(f"and {len(resolved) - RESOLVED_SHOWN} more")
        if not resolved:
            lines.append("none")
    blocks += packed(lines)
    blocks.append(DividerBlock())
    lines = [f"*Queues backlogged in the last 24 h ({len(queues)})*"]
    if isinstance(snaps, str):
        lines.append(f"{MARK_EMOJI_ERROR} depth not read: {escape(snaps)}")
        lines += [f"• *{escape(name)}*" for name in queues[:QUEUES_SHOWN]]
    else:
        for name in queues[:QUEUES_SHOWN]:
            q = matching(snaps, name)
            now_says = (
                "not a queue queueops knows"
                if q is None
                else f"waiting {depth(q)} now, failed {q.counts['failed']}, DLQ {q.dlq_depth}"
            )
            lines.append(f"• *{escape(name)}*: {now_says}")
    if len(queues) > QUEUES_SHOWN:
        lines.append(f"and {len(queues) - QUEUES_SHOWN} more")
    if not queues:
        lines.append("none: no incident named a queue")
    blocks += packed(lines)
    text = (
        f"Daily digest {day.isoformat()}: {open_count} open incidents, "
        f"{resolved_count} resolved in the last 24 h, {len(queues)} queues backlogged"
    )
    return text, blocks[:50]


class Digest:
    """The tick hook (`on_tick`): posts the day's digest once, at INCIDENT_DIGEST_AT."""

    def __init__(
        self,
        incidents: Incidents,
        dispatcher: Dispatcher,
        client: AsyncWebClient,
        *,
        channel: str,
        at: dtime,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.incidents = incidents
        self.dispatcher = dispatcher
        self.client = client
        self.channel = channel
        self.at = at
        self.clock = clock
        self.due: datetime | None = None
        """When this process next looks (in-process: an idle tick reads no Redis for it)."""
        self.posted = 0

    def due_on(self, day: date) -> datetime:
        return datetime.combine(day, self.at.replace(tzinfo=None), tzinfo=UTC)

    def claim_key(self, day: date) -> str:
        return f"{self.incidents.state_prefix}:digest:{day.isoformat()}"

    async def on_tick(self, result: ProbeResult) -> None:
        now = self.clock()
        if self.due is None:  # today's, even when passed: posted if no replica did
            self.due = self.due_on(now.date())
        if now < self.due:
            return
        await self.post(self.due.date(), now)

    def _next_after(self, day: date, now: datetime) -> datetime:
        """The day after `day`, or today when `day` is older (ticks stopped for days)."""
        return self.due_on(max(day + timedelta(days=1), now.date()))

    async def post(self, day: date, now: datetime) -> bool:
        """`day`'s digest, unless another replica claimed it. Raises when the post fails
        (the claim given back: the next tick tries again)."""
        redis = self.incidents.redis
        claim = self.claim_key(day)
        if not await redis.set(claim, _ms(now), nx=True, ex=CLAIM_S):
            self.due = self._next_after(day, now)
            return False
        try:
            text, blocks = await self.compose(day, now)
            from bot.slack.blocks import as_dicts

            await self.client.chat_postMessage(
                channel=self.channel, text=text, blocks=as_dicts(blocks)
            )
        except Exception:
            await redis.delete(claim)  # not posted: the next tick tries again
            raise
        self.due = self._next_after(day, now)
        self.posted += 1
        return True

    async def compose(self, day: date, now: datetime) -> tuple[str, list[Block]]:
        from bot.incidents.listing import open_incidents, read_incidents
        from bot.slack.home import Overview, read_queues, unreadable

        incidents = self.incidents
        now_ms = _ms(now)
        since = now_ms - DAY_MS
        opened: tuple[list[dict[str, Any]], int] | str
        resolved: list[dict[str, Any]] | str
        touched: list[dict[str, Any]] = []
        try:
            opened = await open_incidents(incidents)
            touched += opened[0]
        except Exception as err:
            opened = f"open incidents not read: {unreadable(err)}"
        try:
            from bot.incidents.channels import RECENT_KEEP_MS

            ids = await incidents.redis.zrevrangebyscore(
                incidents.recent_key, "+inf", now_ms - RECENT_KEEP_MS, start=0, num=RECENT_READ
            )
            recent = [
                i
                for i in await read_incidents(incidents, [str(i) for i in ids])
                if i.get("status") == "resolved" and i["resolved_at"]
            ]
            resolved = [i for i in recent if (i["opened_at"] or 0) >= since]
            touched += [i for i in recent if i["resolved_at"] >= since]
        except Exception as err:
            resolved = f"recent incidents not read: {unreadable(err)}"
        queues = list(dict.fromkeys(q for i in touched for q in i["queues"]))
        snaps: list[QueueSnapshot] | str = []
        if queues:  # one snapshot of every queue, as the Home reads them
            overview = Overview()
            await read_queues(self.dispatcher, overview)
            snaps = overview.queues_error or overview.queues
        return digest_blocks(day, now_ms, opened, resolved, queues, snaps)
