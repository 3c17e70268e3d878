"""Issue 15, topic and bookmarks: the channel topic is the incident's live one-line status,
and the channel's bookmarks are its runbook, its dashboard and, once written, its
postmortem. Through the real app (Bolt over HTTP with signed requests), the Slack Web API
stand-in and real Redis."""

from __future__ import annotations

from typing import Any, cast

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from slack_helpers import MakeBot, press, slash
from slack_stub import Call, SlackStub
from test_incident_lifecycle import declare, said, text_of

from bot.config import load_settings
from bot.errors import ConfigError
from bot.http_app import DISPATCHER
from bot.incidents.channels import Incidents
from bot.incidents.desk import SlackIncidentDesk
from bot.incidents.header import ANGLES, FULLWIDTH_AT, TOPIC_MAX, IncidentLinks, plain
from bot.queues.service import QueueService

RUNBOOK = "https://wiki.example.com/runbooks/queues"
BATCH_RUNBOOK = "https://wiki.example.com/runbooks/batch-jobs"
GRAFANA = "https://grafana.example.com/d/bullmq/queues?orgId=1&var-queue={queue}"
AT = FULLWIDTH_AT  # where a mention was: reads as @, pings nobody


@pytest_asyncio.fixture(autouse=True)
async def batch_jobs(service: QueueService) -> None:
    """The queue the incidents here are declared on (a declaration names a known queue)."""
    await service.store.bullmq(service.ref("batch-jobs")).add("email", {"to": "a@example.com"})


def incidents_of(bot: Any) -> Incidents:
    """The app's own Incidents (the one its desk drives), to resume an opening by hand."""
    return cast(SlackIncidentDesk, bot.app[DISPATCHER].incidents).incidents


async def topics(slack: SlackStub, count: int) -> list[str]:
    """The topics set so far, once there are `count` of them."""
    return [c.body["topic"] for c in await slack.wait_for("conversations.setTopic", count)]


async def ran(slack: SlackStub, bot: Any, line: str, channel: str, reply_to: str) -> str:
    """Run `/queue <line>` in the incident channel as an operator; its reply's text, which
    comes after every Slack call the command made."""
    await slash(bot, slack, line, user="UOPS", reply_to=reply_to, channel=channel)
    return text_of((await said(slack, f"respond:{reply_to}", "")).body)


def bookmarks(slack: SlackStub) -> list[dict[str, Any]]:
    return [c.body for c in slack.of("bookmarks.add")]


async def test_the_topic_follows_lead_severity_and_updates_and_is_set_only_on_change(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    channel, _ = await declare(
        bot,
        slack,
        'incident declare "Checkout emails stuck" --queue batch-jobs --severity sev1',
        "d1",
    )
    [first] = await topics(slack, 1)
    assert first == "[sev1] FIRING · lead: nobody yet · Checkout emails stuck on batch-jobs"
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    key = f"{prefix}-state:incident:{iid}"
    assert await redis.hget(key, "topic") == first

    await ran(slack, bot, "incident lead <@UANN>", channel, "l1")
    assert (await topics(slack, 2))[-1] == (
        "[sev1] FIRING · lead: <@UANN> · Checkout emails stuck on batch-jobs"
    )
    # The same lead again changes nothing, so the topic is not set again.
    assert "already" in await ran(slack, bot, "incident lead <@UANN>", channel, "l2")
    assert len(slack.of("conversations.setTopic")) == 2

    await ran(slack, bot, "incident severity sev2", channel, "s1")
    assert (await topics(slack, 3))[-1].startswith("[sev2] FIRING · lead: <@UANN> · Checkout")

    await ran(slack, bot, 'incident update "consumers scaled to 8"', channel, "u1")
    latest = (await topics(slack, 4))[-1]
    assert latest == (
        "[sev2] FIRING · lead: <@UANN> · consumers scaled to 8 · "
        "Checkout emails stuck on batch-jobs"
    )
    assert await redis.hget(key, "topic") == latest
    # A re-sent status refresh (an alert's repeat, a reminder) leaves the topic alone.
    await incidents_of(bot).refresh_topic(iid)
    assert len(slack.of("conversations.setTopic")) == 4

    # A long update is cut, never the severity, the state, the lead or the title.
    long = " ".join(["backlog draining slowly while consumers restart"] * 40)[:2000]
    await ran(slack, bot, f'incident update "{long}"', channel, "u2")
    cut = (await topics(slack, 5))[-1]
    assert len(cut) <= TOPIC_MAX
    assert cut.startswith("[sev2] FIRING · lead: <@UANN> · backlog draining slowly")
    assert cut.endswith("… · Checkout emails stuck on batch-jobs")

    # What someone writes cannot ping the channel from the topic.
    await ran(
        slack, bot, 'incident update "all hands <!channel> and @here, ask <@UBO|bo>"', channel, "u3"
    )
    pinged = (await topics(slack, 6))[-1]
    assert "<!channel>" not in pinged and "@here" not in pinged and "<@UBO" not in pinged
    assert f"all hands {AT}channel and {AT}here, ask {AT}bo" in pinged


async def test_the_topic_says_resolved_and_the_postmortem_is_bookmarked(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    channel, _ = await declare(
        bot, slack, 'incident declare "Exports failing" --queue batch-jobs', "d1"
    )
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    await press(
        bot,
        slack,
        "incident_resolve",
        f"{iid}|batch-jobs",
        user="UOPS",
        reply_to="p1",
        channel=channel,
    )
    mark = await said(slack, "bookmarks.add", "", title="Postmortem")
    key = f"{prefix}-state:incident:{iid}"
    ts = str(await redis.hget(key, "postmortem_ts"))
    [asked] = slack.of("chat.getPermalink")
    assert asked.body == {"channel": channel, "message_ts": ts}
    assert mark.body["channel_id"] == channel and mark.body["type"] == "link"
    assert (
        mark.body["link"] == f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    )
    assert await redis.hget(key, "bookmark:postmortem")
    assert (await topics(slack, 2))[-1] == (
        "[sev2] RESOLVED · lead: nobody yet · Exports failing on batch-jobs"
    )
    assert await redis.hget(key, "status") == "resolved"

    # Resolving again adds nothing (the incident is resolved; every step is recorded).
    await incidents_of(bot).resolve(iid, by="test")
    assert len(slack.of("bookmarks.add")) == 1 and len(slack.of("chat.getPermalink")) == 1


async def test_runbook_per_queue_wins_and_the_dashboard_has_the_queue_quoted(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, redis: aioredis.Redis, prefix: str
) -> None:
    await service.store.bullmq(service.ref("{ocr}")).add("scan", {"page": 1})
    bot = await make_bot(
        incident_runbook_url=RUNBOOK,
        incident_runbooks=f"batch-jobs={BATCH_RUNBOOK}",
        grafana_url=GRAFANA,
    )
    channel, _ = await declare(
        bot, slack, 'incident declare "Checkout emails stuck" --queue batch-jobs', "d1"
    )
    await slack.wait_for("bookmarks.add", 2)
    runbook, dashboard = bookmarks(slack)
    assert runbook == {
        "channel_id": channel,
        "title": "Runbook",
        "type": "link",
        "link": BATCH_RUNBOOK,
        "emoji": ":book:",
    }
    assert dashboard["title"] == "Dashboard" and dashboard["channel_id"] == channel
    assert dashboard["link"] == GRAFANA.replace("{queue}", "batch-jobs")
    # After the status message is pinned: the bookmarks are a step of the opening.
    pinned = slack.of("pins.add")[0]
    assert all(pinned.at <= c.at for c in slack.of("bookmarks.add"))

    other, _ = await declare(bot, slack, 'incident declare "OCR slow" --queue {ocr}', "d2")
    await slack.wait_for("bookmarks.add", 4)
    runbook, dashboard = bookmarks(slack)[2:]
    assert runbook["channel_id"] == other and runbook["link"] == RUNBOOK  # the default
    assert dashboard["link"] == GRAFANA.replace("{queue}", "%7Bocr%7D")

    iid = str(await redis.get(f"{prefix}-state:channel:{other}"))
    key = f"{prefix}-state:incident:{iid}"
    assert await redis.hget(key, "bookmark:runbook")
    assert await redis.hget(key, "bookmark:dashboard:{ocr}")


async def test_a_crash_mid_bookmarks_resumes_without_adding_one_twice(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(incident_runbook_url=RUNBOOK, grafana_url=GRAFANA)
    # Slack adds the runbook, then is down for the dashboard: the opening stops there.
    slack.queued["bookmarks.add"] = [
        {"ok": True, "bookmark": {"id": "Bk0001"}},
        {"ok": False, "error": "internal_error"},
    ]
    await slash(
        bot,
        slack,
        'incident declare "Checkout emails stuck" --queue batch-jobs',
        user="UOPS",
        reply_to="d1",
        channel="C0GENERAL",
    )
    refused = await said(slack, "respond:d1", "internal_error")
    assert "Slack refused opening the incident channel" in text_of(refused.body)
    channel = "C0INC1"
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    key = f"{prefix}-state:incident:{iid}"
    assert await redis.hget(key, "bookmark:runbook") == "Bk0001"
    assert not await redis.hget(key, "bookmark:dashboard:batch-jobs")
    assert not await redis.hget(key, "chart_done")

    await incidents_of(bot).open(iid)  # the retry (the next notification, or a restart)
    assert [b["title"] for b in bookmarks(slack)] == ["Runbook", "Dashboard", "Dashboard"]
    assert await redis.hget(key, "bookmark:dashboard:batch-jobs")
    assert await redis.hget(key, "chart_done")
    assert len(slack.of("pins.add")) == 1 and len(slack.of("conversations.setTopic")) == 1

    await incidents_of(bot).open(iid)  # and once more: everything is recorded
    assert len(slack.of("bookmarks.add")) == 3


async def test_a_refused_bookmark_is_one_line_and_never_blocks_the_incident(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    slack.responses["bookmarks.add"] = {"ok": False, "error": "missing_scope"}
    bot = await make_bot(incident_runbook_url=RUNBOOK, grafana_url=GRAFANA)
    channel, _ = await declare(
        bot, slack, 'incident declare "Checkout emails stuck" --queue batch-jobs', "d1"
    )
    line = await said(slack, "chat.postMessage", "Slack refused", channel=channel)
    assert line.body["text"] == (
        ":warning: Slack refused the Runbook and Dashboard bookmarks: missing_scope. The "
        "incident goes on without them. Add the bookmarks:write scope to the Slack app "
        "(manifest.yml) and reinstall it."
    )
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    key = f"{prefix}-state:incident:{iid}"
    assert await redis.hget(key, "chart_done")  # the opening went on to its last step
    assert await redis.hget(key, "bookmark:runbook") == "refused: missing_scope"
    assert await redis.hget(key, "bookmark:dashboard:batch-jobs") == "refused: missing_scope"

    # Not retried, not said again: a lead change and a resumed opening add nothing.
    await ran(slack, bot, "incident lead <@UANN>", channel, "l1")
    await incidents_of(bot).open(iid)
    assert len(slack.of("bookmarks.add")) == 2
    said_lines: list[Call] = [
        c for c in slack.of("chat.postMessage") if "Slack refused" in str(c.body.get("text"))
    ]
    assert len(said_lines) == 1


@pytest.mark.parametrize(
    ("var", "value", "shown", "secret"),
    [
        (
            "GRAFANA_URL",
            "https://admin:hunter2@grafana.example.com/d/q?var-queue={queue}",
            "'https://grafana.example.com/d/q?var-queue={queue}' carries a user name or password",
            "hunter2",
        ),
        (
            "INCIDENT_RUNBOOK_URL",
            "https://wiki.example.com/rb?token=s3cr3t-tok",
            "'https://wiki.example.com/rb' carries a secret query value",
            "s3cr3t-tok",
        ),
        (
            "INCIDENT_RUNBOOKS",
            "orders=https://wiki.example.com/o,ocr=https://bot:pa55word@wiki.example.com/ocr",
            "ocr: 'https://wiki.example.com/ocr' carries a user name or password",
            "pa55word",
        ),
    ],
)
def test_a_link_with_credentials_is_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, shown: str, secret: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"{var}: ") and shown in message and "\n" not in message
    assert secret not in message and err.value.exit_code == 2


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("GRAFANA_URL", "ftp://grafana.example.com/d/q", "is not an http(s) URL"),
        ("INCIDENT_RUNBOOK_URL", "wiki.example.com/rb", "is not an http(s) URL"),
        ("INCIDENT_RUNBOOKS", "https://wiki.example.com/rb", "is not queue=url"),
        ("INCIDENT_RUNBOOKS", "bad queue=https://wiki.example.com/rb", "is not a queue name"),
        ("INCIDENT_RUNBOOKS", "a=https://x.example.com,a=https://y.example.com", "named twice"),
    ],
)
def test_a_bad_link_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, says: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(f"{var}: ") and says in str(err.value)


def test_link_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "INCIDENT_RUNBOOKS",
        "orders=https://wiki.example.com/rb?a=1,2&b=3, {ocr}=https://wiki.example.com/ocr",
    )
    monkeypatch.setenv("INCIDENT_RUNBOOK_URL", " ")  # set but blank: unset
    settings = load_settings()
    assert settings.incident_runbooks == {
        "orders": "https://wiki.example.com/rb?a=1,2&b=3",
        "{ocr}": "https://wiki.example.com/ocr",
    }
    assert settings.incident_runbook_url is None and settings.grafana_url is None


def test_plain_text_cannot_ping_or_link() -> None:
    assert plain("a &lt;!here&gt; b") == f"a {AT}here b"  # an escaped sequence stays defanged
    assert plain("<!subteam^S012|@oncall> see <https://x.example.com|the doc>") == (
        f"{AT}oncall see the doc"
    )
    assert plain("<#C0123|general>\nnext <line>") == "#general next line"
    assert plain("depth > 5000 @everyone") == f"depth {ANGLES[1]} 5000 {AT}everyone"
    assert plain("<!channel") == f"{ANGLES[0]}!channel"  # a stray `<` opens nothing


def test_which_runbook_and_which_dashboards() -> None:
    links = IncidentLinks(
        runbook_url=RUNBOOK,
        runbooks={"ocr": "https://wiki.example.com/rb/ocr"},
        dashboard_url=GRAFANA,
    )
    annotated = "https://wiki.example.com/alerts/backlog"
    # The queue's own, then the alert's annotation (http(s) only), then the default.
    assert links.runbook({"queues": ["a", "ocr"], "runbook": annotated}).endswith("/rb/ocr")
    assert links.runbook({"queues": ["a"], "runbook": annotated}) == annotated
    assert links.runbook({"queues": ["a"], "runbook": "see the wiki"}) == RUNBOOK
    # One dashboard per queue up to three; none without a queue to fill in.
    shown = links.dashboards(["a", "b", "c", "d"])
    assert [d.title for d in shown] == ["Dashboard: a", "Dashboard: b", "Dashboard: c"]
    assert links.dashboards([]) == []
    whole = IncidentLinks(dashboard_url="https://grafana.example.com/d/all")
    assert [(d.key, d.link) for d in whole.dashboards(["a", "b"])] == [
        ("dashboard", "https://grafana.example.com/d/all")
    ]
