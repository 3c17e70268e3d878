"""Incident channels: one per alert group, opened once, updated, resolved, archived.

Every step records what it did in the incident's Redis hash before the next one runs
(channel, topic, invites, status message, pin, bookmarks, chart), so handling the same
notification again, after a crash, a Slack outage or on another replica, resumes where it
stopped and posts nothing twice. A lock per incident keeps two replicas from working on it
at once.

The lock is short (LOCK_MS) and renewed while its holder works, and only its holder may
renew or release it: a holder that dies (SIGKILL mid `chat.postMessage`) loses it within
LOCK_MS, and whoever finds it taken (`Busy`) leaves the entry pending and comes back
when it expires, so the incident is finished by the next attempt, never forgotten.

A channel name is reserved for one incident before Slack is asked to create it
(`<state>:channelname:<name>`), and a channel Slack says already exists is adopted only
when this incident asked for that very name before (a crash between create and record)
and the bot created it; otherwise the group id is added to the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.models import AlertEvent
from bot.incidents.header import (
    SLACK_OUTAGES,
    Bookmark,
    IncidentLinks,
    refused_line,
    topic_line,
)
from bot.incidents.messages import status_message, utc
from bot.incidents.paging import PAGE_FIELDS, PageError, Pager, page_due, severity_of_labels
from bot.incidents.postmortem import Postmortem, PostmortemState, SnapshotSeen
from bot.incidents.postmortem import build as build_postmortem
from bot.slack.blocks import as_dicts, render_blocks
from bot.urls import url_fit_to_show
from commands.view import Block as ViewBlock
from commands.view import Mark, Note

log = logging.getLogger(__name__)

INVITE_CHUNK = 30  # Netflix Dispatch's chunk size for conversations.invite
STATUS_UPDATE_EVERY_MS = 60_000
LOCK_MS = 10_000
"""How long a lock outlives its holder; renewed every third of it while the holder works."""
TIMELINE_MAX = 500
RECENT_KEEP_MS = 8 * 86_400_000
"""How long `recent_key` keeps an incident: the digest looks a day back, a week is spare."""
NAME_RESERVED_S = 90 * 86_400
"""Slack keeps the names of archived channels too; a reservation outlives the incident."""
PAGE_RETRY_S = (30.0, 120.0, 600.0)
"""After a page failed for an outage (PagerDuty 5xx/429 or unreachable, after the pager's
own quick retries), this process tries again after each of these delays, then leaves it to
the next handling of the incident (a notification, a resolve, an acknowledge). A refusal
(a bad routing key) is not retried in the background, only on the next handling."""

RENEW_LOCK = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LOCK = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"""

SnapshotView = Callable[[Sequence[str]], Awaitable[list[ViewBlock] | SnapshotSeen]]
"""The incident's queues as its channel shows them; a SnapshotSeen also says the depth and
oldest age it saw, kept as the postmortem's impact (bot/incidents/postmortem.py)."""
DepthHistory = Callable[[Sequence[str]], Awaitable[list[tuple[int, int]]]]
"""(ms, depth summed over the queues) of the last hour, from the tick's depth samples."""
ChartMaker = Callable[[Sequence[str]], Awaitable[bytes | None]]


class Busy(Exception):
    """Someone holds this incident's lock: another replica working on it, or a process that
    died holding it. Leave the entry pending and try again after `retry_after_ms`."""

    def __init__(self, iid: str, retry_after_ms: int) -> None:
        super().__init__(f"incident {iid} is locked for {retry_after_ms} ms more")
        self.retry_after_ms = retry_after_ms


def now_ms() -> int:
    return int(time.time() * 1000)


BUSY_POLL_S = 0.2
T = TypeVar("T")


async def waiting_out_busy(step: Callable[[], Awaitable[T]], *, within_ms: int = LOCK_MS) -> T:
    """`step()`, again while it finds the incident's lock taken (Busy), looking every
    BUSY_POLL_S: a lock is released as soon as its holder is done, usually well before
    it would expire. After `within_ms` the Busy is raised (a holder that died keeps it
    until LOCK_MS). For a person's move (a declaration, a Resolve press) that should
    finish with the one incident, not be dropped."""
    deadline = time.monotonic() + within_ms / 1000
    while True:
        try:
            return await step()
        except Busy:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(BUSY_POLL_S)


@dataclass(frozen=True)
class ExistingChannel:
    """A channel people are already in, made the incident's (`incident convert`)."""

    id: str
    name: str


class Incidents:
    def __init__(
        self,
        redis: Redis,
        client: AsyncWebClient,
        *,
        state_prefix: str,
        invite: Sequence[str] = (),
        archive_after_ms: int | None = None,
        snapshot_view: SnapshotView,
        chart: ChartMaker | None = None,
        drain_available: Callable[[], bool] = lambda: False,
        pager: Pager | None = None,
        page_severity: str = "sev2",
        links: IncidentLinks | None = None,
        depth_history: DepthHistory | None = None,
    ) -> None:
        self.redis = redis
        self.depth_history = depth_history
        self.postmortems = PostmortemState(redis, state_prefix)
        self.client = client
        self.s = state_prefix
        self.invite = list(invite)
        self.archive_after_ms = archive_after_ms
        self.snapshot_view = snapshot_view
        self.chart = chart
        self.drain_available = drain_available
        self._claim = redis.register_script(
            resources.files("bot.incidents").joinpath("lua", "claim_incident.lua").read_text()
        )
        self._renew = redis.register_script(RENEW_LOCK)
        self._release = redis.register_script(RELEASE_LOCK)
        self._bot_user: str | None = None
        self.pager = pager
        self.page_severity = page_severity
        self.links = links or IncidentLinks()
        self._page_retries: dict[str, asyncio.Task[None]] = {}
        self._paging: dict[str, asyncio.Lock] = {}
        """One per incident this process paged (a few hundred bytes each, kept: removing
        one while another caller waits on it would let two page at once)."""

    # -- state -------------------------------------------------------------------------

    def _key(self, iid: str) -> str:
        return f"{self.s}:incident:{iid}"

    async def _claim_incident(self, event: AlertEvent, *, create: bool) -> tuple[str, bool]:
        gid = event.group_id
        iid, created = await self._claim(
            keys=[f"{self.s}:group:{gid}", f"{self.s}:groupseq:{gid}"],
            args=[
                f"{self.s}:incident:",
                gid,
                now_ms(),
                event.model_dump_json(),
                "1" if create else "0",
            ],
        )
        return str(iid), bool(int(created))

    @property
    def state_prefix(self) -> str:
        return self.s

    @property
    def open_key(self) -> str:
        """The open incidents: a sorted set, scored by when the reminders should look at
        each next (bot/incidents/reminders.py); added on opening, removed on resolving."""
        return f"{self.s}:incidents:open"

    @property
    def recent_key(self) -> str:
        """The incidents opened in the last RECENT_KEEP_MS: a sorted set scored by when each
        opened (the daily digest's, bot/incidents/digest.py; read without a SCAN)."""
        return f"{self.s}:incidents:recent"

    async def _remember_recent(self, iid: str) -> None:
        """Into `recent_key` on creation, older entries trimmed in the same round trip."""
        at = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.recent_key, {iid: at})
            pipe.zremrangebyscore(self.recent_key, "-inf", at - RECENT_KEEP_MS)
            await pipe.execute()

    async def exists(self, iid: str) -> bool:
        return bool(await self.redis.exists(self._key(iid)))

    async def record(self, iid: str, fields: dict[str, str | int]) -> None:
        """Set fields on the incident (who acknowledged, snoozed until): the status message
        reads them on its next refresh."""
        await self.redis.hset(self._key(iid), mapping=cast("dict[Any, Any]", fields))

    async def load(self, iid: str) -> dict[str, Any]:
        raw = {str(k): str(v) for k, v in (await self.redis.hgetall(self._key(iid))).items()}
        event = json.loads(raw["event"])
        return {
            "id": iid,
            **{k: event[k] for k in ("title", "summary", "queues", "labels", "link", "runbook")},
            "starts_at": datetime.fromisoformat(event["starts_at"]),
            **{k: v for k, v in raw.items() if k != "event"},
            **{
                k: int(raw[k])
                for k in ("opened_at", "notifications", "last_notified_at", "resolved_at")
                if raw.get(k)
            },
        }

    async def incident_of_channel(self, channel: str) -> str | None:
        found = await self.redis.get(f"{self.s}:channel:{channel}")
        return str(found) if found else None

    async def add_to_timeline(
        self, iid: str, text: str, at: int | None = None, *, jobs: dict[str, int] | None = None
    ) -> None:
        """`jobs`: what the entry's command moved ({"quarantined": 3}), counted on the hash
        as the postmortem's impact (`impact_<what>`) with the entry, in one transaction."""
        key = f"{self.s}:timeline:{iid}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps({"at_ms": at or now_ms(), "text": text}))
            pipe.ltrim(key, -TIMELINE_MAX, -1)
            for what, count in (jobs or {}).items():
                if count:
                    pipe.hincrby(self._key(iid), f"impact_{what}", count)
            await pipe.execute()

    async def timeline(self, iid: str) -> list[dict[str, Any]]:
        """Oldest first by each entry's own time: an entry may be added after later ones (a
        message put in the timeline by the shortcut keeps the time it was said)."""
        entries = [
            json.loads(r) for r in await self.redis.lrange(f"{self.s}:timeline:{iid}", 0, -1)
        ]
        return sorted(entries, key=lambda e: int(e.get("at_ms") or 0))

    # -- the entry point -----------------------------------------------------------------

    async def handle(
        self, event: AlertEvent, *, channel: ExistingChannel | None = None
    ) -> tuple[str, bool]:
        """One notification: (the incident's id, whether this call created it). Raises on
        a Slack or Redis failure: the caller leaves the stream entry pending, and handling
        it again resumes.

        `channel`: run the incident from this existing channel instead of opening one
        (`incident convert`). Recorded before `open` looks for a channel, and again on a
        retry (an incident whose claim survived a crash before the record), so the
        incident never gets a channel of its own besides."""
        if event.status == "resolved":
            iid, _ = await self._claim_incident(event, create=False)
            if iid:
                await self.resolve(iid, by=f"{event.source} (resolved)")
            return iid, False
        iid, created = await self._claim_incident(event, create=True)
        key = self._key(iid)
        if channel is not None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, "channel_id", channel.id)
                pipe.hsetnx(key, "channel_name", channel.name)
                pipe.hset(key, "converted", "1")  # people's own channel: never archived
                pipe.set(f"{self.s}:channel:{channel.id}", iid)
                await pipe.execute()
        # On every firing notification (NX: an incident's place kept): a crash after the
        # claim is mended by the retry. The reminders read it (bot/incidents/reminders.py).
        await self.redis.zadd(self.open_key, {iid: now_ms()}, nx=True)
        if created:
            await self._remember_recent(iid)  # the daily digest's index
            await self.add_to_timeline(
                iid,
                f"{event.title} fired ({event.source})",
                int(event.starts_at.timestamp() * 1000),
            )
        else:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "notifications", 1)
                pipe.hset(key, "last_notified_at", now_ms())
                if event.summary:
                    # The latest notification says what is happening now (a flapping
                    # watcher rule's count, an alert's current value): the status shows it.
                    pipe.hset(key, "summary", event.summary)
                await pipe.execute()
        # Busy propagates even for a re-send: the entry being retried may be the very one
        # whose handler died holding the lock, and acking it would leave the channel
        # without its status message for good.
        await self.open(iid)
        if not created:
            await self.refresh_status(iid)
        return iid, created

    # -- opening -------------------------------------------------------------------------

    async def open(self, iid: str) -> None:
        """Bring the incident's channel up to date; every step once."""
        key = self._key(iid)
        done = await self.redis.hmget(key, "first_ts", "chart_done", *PAGE_FIELDS)
        paged = dict(zip(PAGE_FIELDS, done[2:], strict=True))
        owed = self.pager is not None and (
            not paged["severity"] or page_due(paged, self.page_severity) is not None
        )
        if done[0] and done[1] and not owed:
            return
        async with self._locked(iid):
            incident = await self.load(iid)
            if not incident.get("severity"):
                await self.redis.hsetnx(key, "severity", severity_of_labels(incident["labels"]))
            channel = incident.get("channel_id") or await self._create_channel(iid, incident)
            if not incident.get("topic_set"):
                await self.refresh_topic(iid)  # records `topic_set` with the topic
            if not incident.get("invited"):
                await self._invite(channel)
                await self.redis.hset(key, "invited", "1")
            if not incident.get("first_ts"):
                blocks = status_message(
                    incident,
                    await self._snapshot(iid, incident["queues"]),
                    drain_available=self.drain_available(),
                )
                posted = await self.client.chat_postMessage(
                    channel=channel, text=f"{incident['title']} is firing", blocks=as_dicts(blocks)
                )
                ts = str(posted["ts"])
                await self.redis.hset(key, mapping={"first_ts": ts, "status_updated_at": now_ms()})
                await self._pin(channel, ts)
            await self._bookmark(iid, channel, self.links.bookmarks(incident), incident)
            await self._page(iid)  # after the status message: the page links to the channel
            if not incident.get("chart_done"):
                png = await self.chart(incident["queues"]) if self.chart else None
                charted = "1"
                if png:
                    try:
                        await self.client.files_upload_v2(
                            channel=channel,
                            content=png,
                            filename="queue-depth.png",
                            title="Queue depth, last hour",
                        )
                    except SlackApiError as err:  # an outage raises: the step is retried
                        charted = f"refused: {self._refusal(err)}"
                    except (KeyError, TypeError, ValueError) as err:  # an answer it cannot use
                        charted = f"refused: {type(err).__name__}"
                    if charted != "1":  # a picture is not worth holding the incident up for
                        log.warning(
                            "incident %s: the depth chart was not uploaded: %s", iid, charted
                        )
                await self.redis.hset(key, "chart_done", charted)

    @contextlib.asynccontextmanager
    async def _locked(self, iid: str) -> AsyncIterator[None]:
        """Hold the incident's lock, renewed while the body runs; Busy when taken."""
        lock = f"{self.s}:lock:{iid}"
        token = secrets.token_hex(8)
        if not await self.redis.set(lock, token, nx=True, px=LOCK_MS):
            left = int(await self.redis.pttl(lock))
            raise Busy(iid, max(left, 0) + 100)

        async def keep() -> None:
            while True:
                await asyncio.sleep(LOCK_MS / 3000)
                await self._renew(keys=[lock], args=[token, LOCK_MS])

        renewing = asyncio.create_task(keep(), name=f"queueops-lock-{iid}")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewing
            await self._release(keys=[lock], args=[token])

    async def _create_channel(self, iid: str, incident: dict[str, Any]) -> str:
        key = self._key(iid)
        event = AlertEvent.model_validate(json.loads(await self.redis.hget(key, "event") or "{}"))
        for name in (event.channel_name(), event.suffixed_channel_name()):
            if not await self._reserve(name, iid):
                continue  # another incident's name (same title, queue and minute)
            asked_before = await self.redis.hget(key, f"asked:{name}")
            await self.redis.hset(key, f"asked:{name}", "1")  # before Slack may create it
            try:
                created = await self.client.conversations_create(name=name)
                channel = str(created["channel"]["id"])
            except SlackApiError as err:
                if err.response.get("error") != "name_taken":
                    raise
                # Ours only if this incident asked for it before (then crashed before
                # recording it) and the bot created it; a person's channel is not adopted.
                found = await self._find_own_channel(name) if asked_before else None
                if found is None:
                    continue
                channel = found
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"channel_id": channel, "channel_name": name})
                pipe.set(f"{self.s}:channel:{channel}", iid)
                await pipe.execute()
            return channel
        raise RuntimeError(
            f"no free channel name for {event.title}: {event.channel_name()} and "
            f"{event.suffixed_channel_name()} are taken"
        )

    async def _reserve(self, name: str, iid: str) -> bool:
        """The name is this incident's: reserved now, or by an earlier attempt of it."""
        key = f"{self.s}:channelname:{name}"
        if await self.redis.set(key, iid, nx=True, ex=NAME_RESERVED_S):
            return True
        return str(await self.redis.get(key)) == iid

    async def _find_own_channel(self, name: str) -> str | None:
        """The id of the open channel called `name` if the bot created it."""
        if self._bot_user is None:
            self._bot_user = str((await self.client.auth_test())["user_id"])
        cursor = None
        for _ in range(20):
            page = await self.client.conversations_list(
                types="public_channel", exclude_archived=True, limit=1000, cursor=cursor
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            for ch in channels:
                if ch.get("name") == name:
                    return str(ch["id"]) if ch.get("creator") == self._bot_user else None
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    async def _invite(self, channel: str) -> None:
        users: list[str] = []
        for principal in self.invite:
            if principal.startswith("S"):
                members = await self.client.usergroups_users_list(usergroup=principal)
                found: list[str] = members.get("users", [])
                users += [u for u in found if u not in users]
            elif principal not in users:
                users.append(principal)
        for start in range(0, len(users), INVITE_CHUNK):
            try:
                await self.client.conversations_invite(
                    channel=channel, users=",".join(users[start : start + INVITE_CHUNK])
                )
            except SlackApiError as err:
                if err.response.get("error") not in ("already_in_channel", "cant_invite_self"):
                    raise

    async def _pin(self, channel: str, ts: str) -> None:
        try:
            await self.client.pins_add(channel=channel, timestamp=ts)
        except SlackApiError as err:
            if err.response.get("error") != "already_pinned":
                raise

    async def _bookmark(
        self, iid: str, channel: str, wanted: Sequence[Bookmark], incident: dict[str, Any]
    ) -> None:
        """Add each bookmark not added yet, each recorded on the hash (`bookmark:<key>`: its
        id, or `refused: <error>`) as soon as Slack answers, so a retry adds none twice.

        A bookmark Slack refuses (missing_scope, not_allowed_token_type, invalid_link...)
        never holds the incident up: logged, recorded as done (asking again would be
        refused again) and said in the channel in one line for all this round's refusals.
        Only an outage propagates (`_refusal`), as for every other step of `open`."""
        refused: list[tuple[str, str]] = []
        for mark in wanted:
            if incident.get(f"bookmark:{mark.key}"):
                continue
            try:
                added = await self.client.bookmarks_add(
                    channel_id=channel,
                    title=mark.title,
                    type="link",
                    link=mark.link,
                    emoji=mark.emoji,
                )
                done = str((added.get("bookmark") or {}).get("id") or "added")
            except SlackApiError as err:
                error = self._refusal(err)
                log.warning(
                    "incident %s: Slack refused the %s bookmark (%s): %s",
                    iid,
                    mark.title,
                    url_fit_to_show(mark.link),
                    error,
                )
                refused.append((mark.title, error))
                done = f"refused: {error}"
            await self.redis.hset(self._key(iid), f"bookmark:{mark.key}", done)
        if refused:
            await self.client.chat_postMessage(channel=channel, text=refused_line(refused))

    @staticmethod
    def _refusal(err: SlackApiError) -> str:
        """Slack's error when it refused the call; re-raised when Slack is down or busy
        (a 5xx, `ratelimited`, its own internal errors), which a retry of the step mends."""
        error = str(err.response.get("error") or "")
        if err.response.status_code >= 500 or not error or error in SLACK_OUTAGES:
            raise err
        return error

    async def _bookmark_postmortem(self, iid: str) -> None:
        """The postmortem as a bookmark once it is posted (`postmortem_ts`): its
        permalink from Slack (chat.getPermalink), then added and recorded as `_bookmark`
        adds the others. A permalink Slack refuses (message_not_found) counts as the
        bookmark refused: one line, recorded, never holding the resolution up."""
        incident = await self.load(iid)
        ts, channel = incident.get("postmortem_ts"), incident.get("channel_id")
        if not ts or not channel or incident.get("bookmark:postmortem"):
            return
        try:
            found = await self.client.chat_getPermalink(channel=str(channel), message_ts=str(ts))
        except SlackApiError as err:
            error = self._refusal(err)
            log.warning("incident %s: Slack gave no postmortem permalink: %s", iid, error)
            await self.redis.hset(self._key(iid), "bookmark:postmortem", f"refused: {error}")
            await self.client.chat_postMessage(
                channel=str(channel), text=refused_line([("Postmortem", error)])
            )
            return
        link = found.get("permalink")
        if not link:  # an answer without one: nothing to point the bookmark at
            await self.redis.hset(self._key(iid), "bookmark:postmortem", "refused: no permalink")
            return
        mark = Bookmark("postmortem", "Postmortem", str(link), ":memo:")
        await self._bookmark(iid, str(channel), [mark], incident)

    # -- updates ---------------------------------------------------------------------------

    async def refresh_topic(self, iid: str) -> None:
        """Set the channel's topic to the incident's status line (bot/incidents/header.py),
        after each change of state, lead, severity or update. The last one set is kept on
        the hash (`topic`) and an unchanged line is not set again: each conversations.setTopic
        is a "set the channel topic" message in the channel, and a re-sent notification or a
        repeated command must not add one. A crash between Slack's answer and the record
        sets the same line once more on the next change, nothing worse."""
        incident = await self.load(iid)
        channel = incident.get("channel_id")
        if not channel:
            return
        topic = topic_line(incident)
        if topic == incident.get("topic"):
            return
        await self.client.conversations_setTopic(channel=str(channel), topic=topic)
        await self.redis.hset(self._key(iid), mapping={"topic": topic, "topic_set": "1"})

    async def refresh_status(self, iid: str, *, force: bool = False) -> None:
        """Re-render the pinned status message, at most once a minute for all replicas."""
        gate = f"{self.s}:debounce:{iid}"
        if not force and not await self.redis.set(gate, "1", nx=True, px=STATUS_UPDATE_EVERY_MS):
            return
        incident = await self.load(iid)
        if not incident.get("first_ts"):
            return
        blocks = status_message(
            incident,
            await self._snapshot(iid, incident["queues"]),
            drain_available=self.drain_available(),
        )
        await self.client.chat_update(
            channel=incident["channel_id"],
            ts=incident["first_ts"],
            blocks=as_dicts(blocks),
            text=f"{incident['title']}: {incident.get('status', 'open')}",
        )
        await self.redis.hset(self._key(iid), "status_updated_at", now_ms())

    async def resolve(self, iid: str, *, by: str) -> None:
        """Resolution in the same channel: a message, a final snapshot, the postmortem
        (message and Markdown file), the status message and topic updated; archived later
        if configured."""
        key = self._key(iid)
        incident = await self.load(iid)
        if incident.get("status") == "resolved":
            return
        await self.open(iid)  # a group that resolved before its channel was made
        if await self.redis.hsetnx(key, "resolved_at", now_ms()):
            # Only the first attempt: a retry after a Slack failure must not add it again.
            await self.add_to_timeline(iid, f"resolved by {by}")
        incident = await self.load(iid)
        channel = incident["channel_id"]
        if not incident.get("resolution_ts"):
            final = [
                Note(
                    mark=Mark.OK,
                    text=f"Resolved {utc(incident['resolved_at'])} by {by}. Final snapshot:",
                ),
                *await self._snapshot(iid, incident["queues"]),
            ]
            posted = await self.client.chat_postMessage(
                channel=channel,
                text=f"{incident['title']} resolved",
                blocks=as_dicts(render_blocks(final)),
            )
            await self.redis.hset(key, "resolution_ts", str(posted["ts"]))
        if not incident.get("postmortem_ts") or not incident.get("postmortem_file"):
            await self._post_postmortem(iid, incident)
        await self._bookmark_postmortem(iid)
        await self.redis.hset(key, "status", "resolved")
        await self.redis.zrem(self.open_key, iid)
        incident["status"] = "resolved"
        await self._page(iid)  # resolve the page, if there was one
        await self.refresh_topic(iid)
        await self.refresh_status(iid, force=True)
        if self.archive_after_ms and not incident.get("converted"):
            await self.redis.zadd(f"{self.s}:archive", {iid: now_ms() + self.archive_after_ms})

    # -- the postmortem (bot/incidents/postmortem.py) --------------------------------------

    async def _snapshot(self, iid: str, queues: Sequence[str]) -> list[ViewBlock]:
        """The snapshot the channel shows; what it saw is kept as the postmortem's impact
        (the snapshot is taken anyway: no Redis command but the one keeping the maxima)."""
        seen = await self.snapshot_view(queues)
        if not isinstance(seen, SnapshotSeen):
            return seen
        if seen.sample is not None:
            await self.postmortems.note(iid, seen.sample)
        return seen.blocks

    async def _postmortem(self, iid: str) -> Postmortem:
        """The postmortem as it stands: the hash, the alert's source, timeline, follow-ups."""
        incident = await self.load(iid)
        event = json.loads(await self.redis.hget(self._key(iid), "event") or "{}")
        incident["source"] = event.get("source")
        if event.get("source") == "declared":
            incident["declared_summary"] = event.get("summary")  # "declared by slack:U1"
        return build_postmortem(
            incident, await self.timeline(iid), await self.postmortems.followups(iid)
        )

    async def _post_postmortem(self, iid: str, incident: dict[str, Any]) -> None:
        """The message, then the Markdown file, each recorded (`postmortem_ts`,
        `postmortem_file`) as soon as Slack answers, so a retry posts neither twice (a
        crash between Slack's answer and the record posts it once more, as for the chart).
        The depth samples within the incident are folded into its peak depth first.

        Under the incident's lock: two resolves at once (the alert's resolved notification
        and the button, two presses, two replicas) would each post both. The one that finds
        it taken raises Busy, and the holder posts them."""
        key = self._key(iid)
        channel = str(incident["channel_id"])
        opened, resolved = int(incident.get("opened_at") or 0), int(incident["resolved_at"])
        async with self._locked(iid):
            done_ts, done_file = await self.redis.hmget(key, "postmortem_ts", "postmortem_file")
            if done_ts and done_file:
                return
            if self.depth_history is not None and incident["queues"]:
                series = await self.depth_history(incident["queues"])
                await self.postmortems.fold_series(iid, series, opened, resolved)
            found = await self._postmortem(iid)
            if not done_ts:
                posted = await self.client.chat_postMessage(
                    channel=channel, text=found.text, blocks=as_dicts(found.blocks)
                )
                await self.redis.hset(key, "postmortem_ts", str(posted["ts"]))
            if not done_file:
                await self.redis.hset(key, "postmortem_file", await self._attach(channel, found))

    async def _attach(self, channel: str, found: Postmortem) -> str:
        """Attach the Markdown file; what to record: the file's id, or `refused: <why>`.
        An outage raises (the resolve is retried); a refusal (files:write missing, an
        answer files_upload_v2 cannot use) is one line in the channel and never keeps
        the incident from resolving: the message has the postmortem already."""
        try:
            uploaded = await self.client.files_upload_v2(
                channel=channel,
                content=found.markdown.encode(),
                filename=found.filename,
                title=found.title,
            )
        except SlackApiError as err:
            error = self._refusal(err)
        except (KeyError, TypeError, ValueError) as err:  # the upload's steps answered oddly
            error = f"an unusable answer ({type(err).__name__})"
        else:
            file = uploaded.get("file") or {}
            return str(file.get("id") or "uploaded")
        log.warning("postmortem file for %s refused: %s", channel, error)
        await self.client.chat_postMessage(
            channel=channel,
            text=f":warning: Slack refused the postmortem's Markdown file ({error}); "
            "the message above has it all. The incident resolves as usual.",
        )
        return f"refused: {error}"

    async def refresh_postmortem(self, iid: str) -> bool:
        """Edit the posted postmortem message in place (a follow-up added after the resolve);
        False when it is not posted yet (the resolve posts it with everything so far)."""
        incident = await self.load(iid)
        if not incident.get("postmortem_ts") or not incident.get("channel_id"):
            return False
        found = await self._postmortem(iid)
        await self.client.chat_update(
            channel=str(incident["channel_id"]),
            ts=str(incident["postmortem_ts"]),
            text=found.text,
            blocks=as_dicts(found.blocks),
        )
        return True

    # -- paging ----------------------------------------------------------------------------

    async def acknowledge(self, iid: str, *, by: str) -> None:
        """Someone took the lead: the page is acknowledged (once; the first taker is kept)."""
        await self.redis.hsetnx(self._key(iid), "page_ack_by", by)
        await self._page(iid)

    async def _page(self, iid: str) -> None:
        """Bring the pager up to date with the incident (`page_due` says what is owed).

        Never raises for the pager: a failure is one line in the channel, recorded in
        `page_error` (shown again only when it changes) and retried (PAGE_RETRY_S). Only a
        Slack or Redis failure propagates, as for every other step of `open`.

        One at a time per incident in this process (a background retry and an acknowledge
        would both send the ack); across replicas the trigger is under `open`'s lock, and a
        rare double acknowledge or resolve is harmless with the same dedup_key."""
        if self.pager is None:
            return
        async with self._paging.setdefault(iid, asyncio.Lock()):
            await self._page_now(iid, self.pager)

    async def _page_now(self, iid: str, pager: Pager) -> None:
        key = self._key(iid)
        for _ in range(3):  # trigger, acknowledge, resolve at most
            incident = await self.load(iid)
            incident.setdefault("severity", severity_of_labels(incident["labels"]))
            action = page_due(incident, self.page_severity)
            if action is None:
                return
            if action == "trigger":
                await self.redis.hsetnx(key, "paged_at", now_ms())  # before: see page_due
            try:
                if action == "trigger":
                    await pager.trigger(incident)
                elif action == "acknowledge":
                    await pager.acknowledge(incident, str(incident["page_ack_by"]))
                else:
                    await pager.resolve(incident)
            except PageError as err:
                await self._page_failed(iid, incident, str(err), retry=err.retryable)
                return
            except Exception as err:  # a bug in building the event must not block either
                log.exception("incident %s: paging failed", iid)
                line = f"{pager.name}: the {action} failed ({type(err).__name__})"
                await self._page_failed(iid, incident, line, retry=True)
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "page_status", action)
                pipe.hdel(key, "page_error")
                await pipe.execute()
            what = {"trigger": f"paged ({incident['severity']})", "resolve": "page resolved"}
            await self.add_to_timeline(
                iid, f"{pager.name}: {what.get(action, 'page acknowledged')}"
            )
            if incident.get("page_error") and incident.get("channel_id"):
                await self.client.chat_postMessage(
                    channel=incident["channel_id"],
                    text=f"{pager.name} took the {action} after all.",
                )

    async def _page_failed(
        self, iid: str, incident: dict[str, Any], line: str, *, retry: bool
    ) -> None:
        log.warning("incident %s: %s", iid, line)
        if line != incident.get("page_error") and incident.get("channel_id"):
            when = "in a while" if retry else "on the next alert notification"
            await self.client.chat_postMessage(
                channel=incident["channel_id"],
                text=f":warning: {line}. The incident goes on; queueops tries again {when}.",
            )
        await self.redis.hset(self._key(iid), "page_error", line)  # after: shown at least once
        if retry:
            self._retry_page_later(iid)

    def _retry_page_later(self, iid: str) -> None:
        """One background retry loop per incident in this process, bounded (PAGE_RETRY_S);
        a crash loses it, and the next handling of the incident picks the page up again."""
        if iid in self._page_retries:
            return

        async def again() -> None:
            for delay in PAGE_RETRY_S:
                await asyncio.sleep(delay)
                try:
                    await self._page(iid)
                    if page_due(await self.load(iid), self.page_severity) is None:
                        return
                except Exception as err:  # Slack or Redis down: the next round, or handling
                    log.warning("incident %s: retrying the page failed: %s", iid, err)

        task = asyncio.create_task(again(), name=f"queueops-page-{iid}")
        self._page_retries[iid] = task
        task.add_done_callback(lambda _: self._page_retries.pop(iid, None))

    async def close(self) -> None:
        """Stop the background page retries (at shutdown; the next start resumes them)."""
        tasks = list(self._page_retries.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def archive_due(self) -> int:
        """Archive the channels of incidents resolved long enough ago."""
        due = [
            str(i) for i in await self.redis.zrangebyscore(f"{self.s}:archive", "-inf", now_ms())
        ]
        for iid in due:
            channel = await self.redis.hget(self._key(iid), "channel_id")
            if channel:
                try:
                    await self.client.conversations_archive(channel=str(channel))
                except SlackApiError as err:
                    if err.response.get("error") != "already_archived":
                        raise
            await self.redis.zrem(f"{self.s}:archive", iid)
        return len(due)
