"""What an alert looks like on the way in, and the one shape every source becomes.

Alertmanager's webhook (version 4) and our generic JSON are validated with pydantic;
unknown fields are tolerated (Alertmanager adds some between versions), missing or wrongly
typed required ones are a 400 naming the field.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Status = Literal["firing", "resolved"]
SUFFIX_LEN = 6

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def usable_start(value: datetime) -> datetime:
    """A start time every later step can use: with an offset (a naive one cannot be placed,
    nor compared with the aware times of the same payload) and within 1970..9999 once in
    UTC (`9999-12-31T23:59:59-14:00` is year 10000 in UTC, `0001-01-01T00:00:00+01:00` year
    0: both overflow when the channel name is built). Normalised to UTC, so what is stored
    can be handled on any host."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-23T07:00:00Z")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    if in_utc < EARLIEST:
        raise ValueError("before 1970")
    return in_utc


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class AmAlert(_Tolerant):
    status: Status
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    """Not used: firing alerts carry Alertmanager's `0001-01-01T00:00:00Z` here."""
    generator_url: str | None = Field(None, alias="generatorURL")
    fingerprint: str | None = None

    @field_validator("starts_at")
    @classmethod
    def _starts_at(cls, value: datetime) -> datetime:
        return usable_start(value)


class AlertmanagerPayload(_Tolerant):
    """Alertmanager's webhook body, version 4 (prometheus.io/docs/alerting/latest/configuration)."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1, max_length=2000)
    status: Status
    receiver: str = ""
    alerts: list[AmAlert] = Field(min_length=1, max_length=1000)
    group_labels: dict[str, str] = Field({}, alias="groupLabels")
    common_labels: dict[str, str] = Field({}, alias="commonLabels")
    common_annotations: dict[str, str] = Field({}, alias="commonAnnotations")
    external_url: str | None = Field(None, alias="externalURL")
    truncated_alerts: int = Field(0, alias="truncatedAlerts")


class GenericAlert(_Tolerant):
    """POST /alerts/generic: the small JSON any tool can send (README documents it)."""

    title: str = Field(min_length=1, max_length=200)
    status: Status = "firing"
    queue: str | None = Field(None, max_length=200)
    summary: str | None = Field(None, max_length=2000)
    fingerprint: str | None = Field(None, min_length=1, max_length=200)
    url: str | None = Field(None, max_length=2000)
    labels: dict[str, str] = {}
    starts_at: datetime | None = Field(None, alias="startsAt")

    @field_validator("starts_at")
    @classmethod
    def _starts_at(cls, value: datetime | None) -> datetime | None:
        return None if value is None else usable_start(value)


class AlertEvent(BaseModel):
    """One notification about one alert group, whatever its source; stored in the stream."""

    source: Literal["alertmanager", "generic", "watcher", "declared"]
    """"declared": a person opened it (`/queue incident declare`), not an alert."""
    group_key: str
    status: Status
    title: str
    summary: str = ""
    queues: list[str] = []
    labels: dict[str, str] = {}
    starts_at: datetime
    link: str | None = None
    runbook: str | None = None

    @field_validator("queues")
    @classmethod
    def _queues(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("starts_at")
    @classmethod
    def _starts_at(cls, value: datetime) -> datetime:
        """Also on the way out of the stream: an entry stored before intake checked this
        fails to decode and is parked at once instead of failing on every retry."""
        return usable_start(value)

    @property
    def group_id(self) -> str:
        """A short stable id for the group: the key of its Redis state."""
        return self.group_id_of(self.group_key)

    @staticmethod
    def group_id_of(group_key: str) -> str:
        """The group id of a group key, without an event (where a group's incident is
        looked up before there is one)."""
        return hashlib.sha256(group_key.encode()).hexdigest()[:20]

    def channel_name(self) -> str:
        """`inc-<yyyymmdd>-<hhmm>-<slug>`: lowercase, [a-z0-9-], at most 80 characters.
        Built from when the alert started, so a retry after a crash builds the same name.
        A title with no Latin letter or digit (symbols, another script) gives
        `alert-<group id>`, so two such groups do not both become `alert`."""
        stamp = self.starts_at.astimezone(UTC).strftime("%Y%m%d-%H%M")
        slug = re.sub(r"[^a-z0-9]+", "-", " ".join([self.title, *self.queues]).lower())
        slug = slug.strip("-") or f"alert-{self.group_id[:SUFFIX_LEN]}"
        return f"inc-{stamp}-{slug}"[:80].rstrip("-")

    def suffixed_channel_name(self) -> str:
        """The name when the plain one belongs to someone else (a person's channel, another
        group that started the same minute): the group id makes it this group's own (twice
        as much of it where the plain name already ends with the short one)."""
        base = self.channel_name()
        short = self.group_id[:SUFFIX_LEN]
        suffix = f"-{self.group_id[: 2 * SUFFIX_LEN]}" if base.endswith(short) else f"-{short}"
        return f"{base[: 80 - len(suffix)].rstrip('-')}{suffix}"


def _queues_of(labels: dict[str, str]) -> list[str]:
    return [labels["queue"]] if labels.get("queue") else []


def from_alertmanager(payload: AlertmanagerPayload) -> AlertEvent:
    first = payload.alerts[0]
    labels = {**payload.common_labels, **payload.group_labels}
    queues = sorted({q for a in payload.alerts for q in _queues_of(a.labels)})
    annotations = payload.common_annotations or first.annotations
    return AlertEvent(
        source="alertmanager",
        group_key=payload.group_key,
        status=payload.status,
        title=labels.get("alertname", "alert"),
        summary=annotations.get("summary") or annotations.get("description") or "",
        queues=queues,
        labels=labels,
        starts_at=min(a.starts_at for a in payload.alerts),
        link=first.generator_url or payload.external_url,
        runbook=annotations.get("runbook_url"),
    )


def from_generic(alert: GenericAlert, now: datetime) -> AlertEvent:
    key = (
        alert.fingerprint
        or hashlib.sha256(f"{alert.title}\0{alert.queue or ''}".encode()).hexdigest()[:16]
    )
    return AlertEvent(
        source="generic",
        group_key=f"generic:{key}",
        status=alert.status,
        title=alert.title,
        summary=alert.summary or "",
        queues=[alert.queue] if alert.queue else [],
        labels=alert.labels,
        starts_at=alert.starts_at or now,
        link=alert.url,
    )


def summarize_error(errors: list[Any]) -> str:
    """pydantic's first complaint as one line: `alerts.0.startsAt: Field required`."""
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}"
