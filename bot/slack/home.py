"""The App Home tab: what a person opening the bot sees first. Open incidents (newest
first), one status line per queue of the default environment, the drain cron's mode and last
tick, and their own role.

Published (views.publish) when Slack sends `app_home_opened` for the Home tab, over HTTP
(a signed JSON `event_callback` to /slack/events, Bolt's) or Socket Mode alike; reopening
the tab is the refresh. A snapshot of every queue is one script call, but on a queue of a
million jobs it is real work, so a person flicking between tabs gets at most one publish per
DEBOUNCE_MS (SET NX PX per user, shared by the replicas).

Nothing here changes anything, so nothing is audited. Each part is read on its own and a
part that cannot be read (Redis or the jobs database down) becomes one line: Slack never
sees an exception, and the rest of the tab still shows.

Its renderers are shared with the daily digest (bot/incidents/digest.py); the incidents
are read by bot/incidents/listing.py, as the digest and the timeline shortcut read them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.durations import humanize_age_ms
from bot.errors import QueueOpsError, RedisQuotaExhausted
from bot.incidents.listing import open_incidents
from bot.incidents.messages import lead_lines
from bot.queues.models import QueueSnapshot
from bot.roles import Role
from bot.slack.blocks import MARK_EMOJI, SECTION_LIMIT, escape
from bot.slack.roles import RoleResolver, slack_error
from bot.urls import hide_url_credentials
from commands.cron import CronStatusReply
from commands.snapshot import DRAIN_HISTORY, lacks_workers, queue_mark, status_word
from commands.view import Mark
from scheduler.state import DrainRun

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from bot.dispatch import Dispatcher
    from bot.incidents.channels import Incidents

log = logging.getLogger(__name__)

DEBOUNCE_MS = 10_000
"""At most one Home publish per person this often (all replicas together)."""
INCIDENTS_SHOWN = 20
"""Open incidents shown, newest first; the rest are counted ("and 3 more")."""
QUEUE_LINES = 50
"""Queue lines shown; a deployment with more names the count of the rest."""
MAX_VIEW_BLOCKS = 100
"""Slack's limit for a view."""
MARK_EMOJI_ERROR = MARK_EMOJI[Mark.ERROR]


def now_ms() -> int:
    return int(time.time() * 1000)


def unreadable(err: BaseException) -> str:
    """A read that failed, in one line a person can act on (no credentials in it)."""
    if RedisQuotaExhausted.matches(err):
        text = "Redis request quota used up (Upstash-style limit)"
    elif isinstance(err, (RedisError, OSError)):
        text = f"Redis unreachable: {err}"
    elif isinstance(err, QueueOpsError):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}"
    return hide_url_credentials(text)[:300]


# -- reading ---------------------------------------------------------------------------


@dataclass
class Overview:
    """What the Home shows, each part with the one line saying why it could not be read."""

    incidents: list[dict[str, Any]] = field(default_factory=list)
    open_total: int = 0
    incidents_error: str | None = None
    queues: list[QueueSnapshot] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    """Queues whose backend could not be read (the jobs database down), with the error."""
    queues_error: str | None = None
    cron: CronStatusReply | None = None
    cron_error: str | None = None
    drains: dict[str, DrainRun | None] | None = None
    """In cron mode, each queue waiting without workers: its last drain (`snapshot`'s)."""


async def read_queues(dispatcher: Dispatcher, overview: Overview) -> None:
    """Every queue: one snapshot call, as the `snapshot` command makes."""
    try:
        overview.queues = await dispatcher.service.snapshot(None, unreachable=overview.unreachable)
    except Exception as err:
        overview.queues_error = unreadable(err)


async def read_overview(dispatcher: Dispatcher, incidents: Incidents) -> Overview:
    overview = Overview()
    try:
        overview.incidents, overview.open_total = await open_incidents(incidents)
    except Exception as err:
        overview.incidents_error = unreadable(err)
    await read_queues(dispatcher, overview)
    if dispatcher.cron is None:
        overview.cron_error = "the drain cron's state is not available here"
    else:
        try:
            overview.cron = CronStatusReply(  # what `cron status` shows
                status=await dispatcher.cron.status(),
                drain_url_set=dispatcher.drain is not None,
                instant=dispatcher.settings.drain_instant and dispatcher.drain is not None,
                wake_max_ms=dispatcher.settings.drain_wake_max_ms,
            )
        except Exception as err:
            overview.cron_error = unreadable(err)
    await read_drains(dispatcher, overview)
    return overview


async def read_drains(dispatcher: Dispatcher, overview: Overview) -> None:
    """In cron mode no Worker is connected between drains by design: a queue waiting
    without workers is marked by its last drain, as `snapshot` marks it (`last_drains`),
    read only when such a queue exists."""
    waiting = [q.shown for q in overview.queues if lacks_workers(q)]
    if (
        not waiting
        or dispatcher.cron is None
        or not (overview.cron and overview.cron.status.enabled)
    ):
        return
    try:
        runs = await dispatcher.cron.history(DRAIN_HISTORY)
    except Exception as err:  # marked "no workers" then; the rest stands
        log.warning("home: no drain history: %s", unreadable(err))
        return
    overview.drains = {name: next((r for r in runs if name in r.queues), None) for name in waiting}


# -- rendering -------------------------------------------------------------------------


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:SECTION_LIMIT]))


def _note(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text[:SECTION_LIMIT])])


def packed(lines: Sequence[str]) -> list[Block]:
    """Lines in as few sections as Slack's 3000 characters a text allow."""
    out: list[Block] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        line = line[:SECTION_LIMIT]
        if chunk and size + len(line) + 1 > SECTION_LIMIT:
            out.append(_section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        out.append(_section("\n".join(chunk)))
    return out


def incident_text(incident: dict[str, Any], now: int) -> str:
    """Title, channel and age; severity and lead; the latest update."""
    channel = f"<#{incident['channel_id']}>" if incident.get("channel_id") else "channel opening"
    age = humanize_age_ms(now - incident["opened_at"]) if incident.get("opened_at") else "?"
    queues = f" on {escape(', '.join(incident['queues']))}" if incident.get("queues") else ""
    head = f":rotating_light: *{escape(str(incident['title']))}*{queues} · {channel} · {age} ago"
    return "\n".join([head, *lead_lines(incident)])[:SECTION_LIMIT]


def incident_blocks(
    incidents: Sequence[dict[str, Any]], total: int, now: int, *, shown: int = INCIDENTS_SHOWN
) -> list[Block]:
    """One section per open incident, newest first, and the count of those left out."""
    if not incidents:
        return [_note(":white_check_mark: No open incidents.")]
    blocks: list[Block] = [_section(incident_text(i, now)) for i in incidents[:shown]]
    more = max(total, len(incidents)) - min(shown, len(incidents))
    if more > 0:
        blocks.append(_note(f"and {more} more open"))
    return blocks


def depth(q: QueueSnapshot) -> int:
    """Jobs waiting to run, as the snapshot's backlog mark counts them."""
    return q.counts["waiting"] + q.counts["prioritized"] + q.counts["paused"]


def queue_line(q: QueueSnapshot, drains: dict[str, DrainRun | None] | None = None) -> str:
    mark = queue_mark(q, drains)
    c = q.counts
    age = "-" if q.oldest_waiting_age_ms is None else humanize_age_ms(q.oldest_waiting_age_ms)
    parts = [
        f"{MARK_EMOJI[mark]} *{escape(q.shown)}* {status_word(mark)}",
        f"waiting {depth(q)}",
        f"active {c['active']}",
        f"delayed {c['delayed']}",
        f"failed {c['failed']}",
        f"oldest waiting {age}",
        f"DLQ {q.dlq_depth}",
    ]
    if q.is_paused:
        parts.append("paused")
    return " · ".join(parts)


def queue_lines(overview: Overview, *, shown: int = QUEUE_LINES) -> list[str]:
    if overview.queues_error:
        return [f"{MARK_EMOJI_ERROR} queues not read: {escape(overview.queues_error)}"]
    lines = [queue_line(q, overview.drains) for q in overview.queues[:shown]]
    if len(overview.queues) > shown:
        lines.append(f"and {len(overview.queues) - shown} more queues (`/queue snapshot`)")
    lines += [
        f"{MARK_EMOJI_ERROR} *{escape(name)}* not read: {escape(why)}"
        for name, why in list(overview.unreachable.items())[:10]
    ]
    if len(overview.unreachable) > 10:
        lines.append(f"and {len(overview.unreachable) - 10} more not read")
    return lines or ["No queues found (set QUEUEOPS_QUEUES?)"]


def cron_line(overview: Overview, now: int) -> str:
    """`cron status` in one line: on or off and why, the mode, cadence and last tick."""
    if overview.cron is None:
        return f"{MARK_EMOJI_ERROR} drain cron not read: {escape(overview.cron_error or '?')}"
    d = overview.cron.data()
    state = "on" if d["enabled"] else "off"
    why = f" ({'; '.join(d['offBecause'])})" if d["offBecause"] else ""
    last_ms = overview.cron.status.last_tick_ms
    last = (
        f"{d['last'][:19].replace('T', ' ')} UTC ({humanize_age_ms(now - last_ms)} ago)"
        if d["last"] and last_ms
        else "none yet"
    )
    return f"Drain cron *{state}*{why} · mode {d['mode']} · every {d['every']} · last tick {last}"


def home_blocks(overview: Overview, role: Role, now: int) -> list[Block]:
    """The Home tab's blocks, at most Slack's 100."""
    blocks: list[Block] = [
        HeaderBlock(text="queueops"),
        _note(f"Your role: *{role.label}* · `/queue help` lists what you may run"),
        DividerBlock(),
        HeaderBlock(text=f"Open incidents ({overview.open_total})"),
    ]
    if overview.incidents_error:
        blocks.append(
            _section(f"{MARK_EMOJI_ERROR} incidents not read: {overview.incidents_error}")
        )
    else:
        blocks += incident_blocks(overview.incidents, overview.open_total, now)
    blocks += [DividerBlock(), HeaderBlock(text="Queues")]
    blocks += packed(queue_lines(overview))
    blocks += [DividerBlock(), _section(cron_line(overview, now))]
    if len(blocks) > MAX_VIEW_BLOCKS:  # cannot happen with the bounds above; kept safe
        blocks = [*blocks[: MAX_VIEW_BLOCKS - 1], _note("(truncated)")]
    return blocks


def home_view(overview: Overview, role: Role, now: int) -> dict[str, Any]:
    return View(type="home", blocks=home_blocks(overview, role, now)).to_dict()


# -- the listener ----------------------------------------------------------------------


class AppHome:
    """Publishes the Home tab on `app_home_opened` (register it on the Bolt app)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        incidents: Incidents,
        roles: RoleResolver,
        client: AsyncWebClient,
        *,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        self.dispatcher = dispatcher
        self.incidents = incidents
        self.roles = roles
        self.client = client
        self.env = dispatcher.settings.env_name
        self.debounce_ms = debounce_ms
        self.published = 0
        self.skipped = 0
        """Opens within the debounce: nothing read, nothing published (for tests, a look)."""

    def register(self, bolt: AsyncApp) -> None:
        bolt.event("app_home_opened")(self.on_opened)

    async def on_opened(self, event: dict[str, Any]) -> None:
        """Only the Home tab (not Messages or About), at most once per debounce."""
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str) or not user:
            return
        await self.publish(user)

    async def publish(self, user: str) -> bool:
        gate = f"{self.incidents.state_prefix}:home:{user}"
        try:
            if not await self.incidents.redis.set(gate, "1", nx=True, px=self.debounce_ms):
                self.skipped += 1
                return False
        except Exception as err:  # Redis down: the Home still says so
            log.warning("home: no debounce for %s: %s", user, unreadable(err))
        try:
            overview = await read_overview(self.dispatcher, self.incidents)
            view = home_view(overview, await self.roles.role_of(user, self.env), now_ms())
            await self.client.views_publish(user_id=user, view=view)
        except SlackApiError as err:
            log.warning("home: views.publish for %s failed: %s", user, slack_error(err))
            return False
        except Exception:  # a bug: logged, never an exception to Bolt
            log.exception("home: publishing for %s failed", user)
            return False
        self.published += 1
        return True
