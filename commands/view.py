"""A transport-neutral picture of a reply: headings, tables, fields, notes.

Commands describe what to show with these blocks; the text renderer draws them as aligned
plain text and the Slack renderer as Block Kit. A new command needs no renderer change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field


class Mark(StrEnum):
    """A status at a glance; each transport draws it its own way (emoji, [tag])."""

    HEALTHY = "healthy"
    BACKLOG = "backlog"
    FAILING = "failing"
    PAUSED = "paused"
    NO_WORKERS = "no workers"
    OK = "ok"
    WARN = "warn"
    ERROR = "error"
    INFO = "info"


class Heading(BaseModel):
    kind: Literal["heading"] = "heading"
    text: str


class Text(BaseModel):
    kind: Literal["text"] = "text"
    text: str


class Note(BaseModel):
    """A one-line message with a mark: an outcome, a warning, a hint."""

    kind: Literal["note"] = "note"
    mark: Mark
    text: str


class Fields(BaseModel):
    """Label/value pairs, e.g. a job's attributes."""

    kind: Literal["fields"] = "fields"
    items: list[tuple[str, str]]


class Row(BaseModel):
    cells: list[str]
    mark: Mark | None = None


class Table(BaseModel):
    kind: Literal["table"] = "table"
    columns: list[str]
    rows: list[Row]


class Code(BaseModel):
    """Verbatim text (a payload, a stack trace), shown monospaced and never reflowed."""

    kind: Literal["code"] = "code"
    text: str


class Chart(BaseModel):
    """A time series per queue (ms, value): a picture in Slack, a sparkline in text."""

    kind: Literal["chart"] = "chart"
    title: str
    series: dict[str, list[tuple[int, int]]]


class Attachment(BaseModel):
    """A whole document beside the reply (a job's full JSON): a file in Slack, a one-line
    note in text (which points to `--json` or a command that prints all of it)."""

    kind: Literal["attachment"] = "attachment"
    filename: str
    content: str
    title: str
    note: str = ""
    """What the text renderer says instead of the file, e.g. "--json has all of it"."""


class Buttons(BaseModel):
    """Commands a person may run from the reply with one press (an incident's "quarantine
    this failure cluster"): buttons in Slack, each asking first with `confirm`, run as the
    person who pressed (their role applies); in text, the command lines to type."""

    kind: Literal["buttons"] = "buttons"
    items: list[tuple[str, str, str]]
    """(label, command line, what the confirmation dialog says)."""


Block = Annotated[
    Heading | Text | Note | Fields | Table | Code | Chart | Attachment | Buttons,
    Field(discriminator="kind"),
]
