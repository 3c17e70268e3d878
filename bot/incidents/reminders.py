"""Update reminders (issue 15, section 4): an open incident with no `/queue incident update`
for INCIDENT_UPDATE_EVERY (per severity) has its lead reminded in the incident channel,
once per interval, with a `Snooze` button (30 minutes).

What it costs Redis. The open incidents are a sorted set (`Incidents.open_key`, kept by
bot/incidents/channels.py: added when a notification opens one, removed on resolve) scored
by when the reminders should next look at each. The tick's one command, the probe script,
already counts `zdue` extras (lua/probe.lua): counting the members due now rides in it, so
a tick costs nothing more, with no open incident and with open ones not due, on every
replica alike, and a replica learns of an incident another one opened on its next tick
(no in-process list to go stale). Only a tick whose count is not 0 reads: one ZRANGEBYSCORE
and, in one pipeline, the few fields of each due incident; each is then scored again for
its next reminder, or at most LOOK_EVERY_MS ahead, so an open incident is read at most once
a minute. The score may only be earlier than the true next reminder (an update or a
severity change, recorded on the hash by bot/incidents/desk.py, is seen at the next look),
never later by more than that minute.

Replicas: the reminder for one quiet interval (`since`, the latest of the opening, the last
update and the last reminder) is claimed with SET NX PX on `<state>:remind:<id>:<since>`
before it is posted, so two replicas looking at once remind once. Crash safety: a failed
post gives the claim back; a crash between the claim and the post loses that one reminder
(the next interval's comes), which a reminder can afford and a duplicate in the channel
would not be better than.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from bot.durations import format_duration_ms, parse_duration_ms

if TYPE_CHECKING:  # Slack's modules only where reminders run: the CLI's settings parse
    # INCIDENT_UPDATE_EVERY with this module, and a CLI snapshot imports no slack_sdk
    # (tests/test_cli.py).
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.incidents.channels import Incidents
    from bot.queues.bullmq.probe import Extra
    from bot.queues.models import ProbeResult

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


REMIND_SNOOZE = "incident_remind_snooze"
"""The action id of the reminder's `Snooze` button (bot/incidents/actions.py handles it)."""
SNOOZE_MS = 30 * 60_000
LOOK_EVERY_MS = 60_000
"""The longest an open incident waits between two looks: how late an earlier reminder (a
severity raised, a shorter interval) may come. Shorter when an interval is (tests)."""
BATCH = 100
"""Due incidents read per tick (one ZRANGEBYSCORE page); the rest on the next tick."""
SEVERITIES = ("sev1", "sev2", "sev3")
FIELDS = (
    "status",
    "severity",
    "lead",
    "channel_id",
    "opened_at",
    "updated_at",
    "reminded_at",
    "remind_snoozed_until",
)


def parse_update_every(text: str) -> dict[str, int]:
    """ "sev1=30m,sev2=60m" -> {"sev1": 1800000, "sev2": 3600000}; one line on a mistake
    (the setting's validator shows it at start). Empty: no reminders."""
    every: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        severity, eq, duration = part.partition("=")
        severity = severity.strip().lower()
        if not eq or severity not in SEVERITIES:
            raise ValueError(f"{part[:40]!r} is not sevN=duration (sev1, sev2 or sev3)")
        if severity in every:
            raise ValueError(f"{severity} is given twice")
        ms = parse_duration_ms(duration)
        if ms < 1000:
            raise ValueError(f"{severity}={duration.strip()} is shorter than 1s")
        every[severity] = ms
    return every


def reminder_blocks(iid: str, lead: str | None, quiet_ms: int) -> tuple[str, list[Any]]:
    """The reminder's text and blocks: who should post, how to, and the Snooze button."""
    from slack_sdk.models.blocks import (
        ActionsBlock,
        ButtonElement,
        MarkdownTextObject,
        SectionBlock,
    )

    from bot.slack.blocks import as_dicts

    who = f"<@{lead}>" if lead else "Nobody leads this incident yet:"
    quiet_ms -= quiet_ms % (60_000 if quiet_ms >= 60_000 else 1000)  # "31m", not "31m4s17ms"
    text = (
        f":alarm_clock: {who} no update for {format_duration_ms(quiet_ms)}. Post one with "
        '`/queue incident update "what is happening"` (stakeholders get it too).'
    )
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=text)),
        ActionsBlock(
            block_id="incident_remind",
            elements=[
                ButtonElement(text="Snooze 30 min", action_id=REMIND_SNOOZE, value=f"{iid}|")
            ],
        ),
    ]
    return text, as_dicts(blocks)


class Reminders:
    """The tick hook (`on_tick`). `extra()` goes to `Ticker.add_extra`, and the index that
    returns to `index`, where `on_tick` finds the count of incidents due a look."""

    def __init__(
        self,
        incidents: Incidents,
        client: AsyncWebClient,
        every: dict[str, int],
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.incidents = incidents
        self.client = client
        self.every = every
        self.clock = clock
        self.look_every_ms = min([LOOK_EVERY_MS, *every.values()])
        self.index = -1
        self.sent = 0  # reminders this process posted (for a look at a running bot)

    def extra(self) -> Extra:
        """How many open incidents are due a look now, counted by the tick's own command."""
        from bot.queues.bullmq.probe import Extra

        return Extra("zdue", self.incidents.open_key, ("now",))

    async def on_tick(self, result: ProbeResult) -> None:
        if self.index >= 0 and result.extras[self.index]:
            await self.look()

    async def look(self) -> int:
        """Look at the incidents due: remind where an interval passed quietly, and score
        each for its next look. Returns how many reminders this call posted."""
        redis = self.incidents.redis
        key = self.incidents.open_key
        now = self.clock()
        due = [str(i) for i in await redis.zrangebyscore(key, "-inf", now, start=0, num=BATCH)]
        if not due:
            return 0
        async with redis.pipeline(transaction=False) as pipe:
            for iid in due:
                pipe.hmget(f"{self.incidents.state_prefix}:incident:{iid}", *FIELDS)
            rows = await pipe.execute()
        sent = 0
        gone: list[str] = []
        looks: dict[str, int] = {}
        for iid, row in zip(due, rows, strict=True):
            fields = dict(zip(FIELDS, row, strict=True))
            if fields["status"] == "resolved" or fields["opened_at"] is None:
                gone.append(iid)  # resolved (or gone) without its ZREM: a crash
                continue
            try:
                next_at, reminded = await self._one(iid, fields, now)
            except Exception as err:  # Slack refused: this one again next look
                log.warning("reminders: incident %s: %s", iid, err)
                next_at, reminded = now + self.look_every_ms, False
            sent += reminded
            looks[iid] = min(next_at, now + self.look_every_ms)
        if gone:
            await redis.zrem(key, *gone)
        if looks:  # one command for all; XX: never put back one resolved meanwhile
            await redis.zadd(key, cast("dict[Any, Any]", looks), xx=True)
        self.sent += sent
        return sent

    async def _one(self, iid: str, fields: dict[str, Any], now: int) -> tuple[int, bool]:
        """(when to look again, whether a reminder was posted now) for one incident."""
        interval = self.every.get(str(fields["severity"] or "sev3"))
        if interval is None:
            return now + self.look_every_ms, False  # not reminded; its severity may change
        since = max(int(fields[f] or 0) for f in ("opened_at", "updated_at", "reminded_at"))
        due = max(since + interval, int(fields["remind_snoozed_until"] or 0))
        channel = fields["channel_id"]
        if now < due or not channel:
            return due, False  # no channel yet: still opening, next look
        redis = self.incidents.redis
        claim = f"{self.incidents.state_prefix}:remind:{iid}:{since}"
        if not await redis.set(claim, "1", nx=True, px=max(interval, LOOK_EVERY_MS)):
            return now + self.look_every_ms, False  # another replica reminds
        quiet = now - max(int(fields[f] or 0) for f in ("opened_at", "updated_at"))
        text, blocks = reminder_blocks(iid, fields["lead"] or None, quiet)
        try:
            await self.client.chat_postMessage(channel=str(channel), text=text, blocks=blocks)
        except Exception:
            await redis.delete(claim)  # not posted: the next look may try again
            raise
        await self.incidents.record(iid, {"reminded_at": now})
        return now + interval, True


async def snooze_reminder(incidents: Incidents, iid: str, until: int) -> None:
    """No reminder before `until`: recorded on the incident (the next look reads it) and
    its look moved there (XX: a resolved incident stays out of the open set)."""
    await incidents.record(iid, {"remind_snoozed_until": until})
    await incidents.redis.zadd(incidents.open_key, {iid: until}, xx=True)
