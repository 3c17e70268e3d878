"""A reply's view as Block Kit, built with slack_sdk's block models.

Slack has no table block that reads well on a phone, so a table becomes one line per row:
the row's mark as an emoji, its first cell in bold, then `column value` pairs (zeros and
dashes left out, they are noise at 3 a.m.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.text import plural
from commands.view import (
    Attachment,
    Buttons,
    Chart,
    Code,
    Fields,
    Heading,
    Mark,
    Note,
    Table,
    Text,
)
from commands.view import Block as ViewBlock

MARK_EMOJI = {
    Mark.HEALTHY: ":large_green_circle:",
    Mark.BACKLOG: ":large_yellow_circle:",
    Mark.FAILING: ":red_circle:",
    Mark.PAUSED: ":double_vertical_bar:",
    Mark.NO_WORKERS: ":no_entry:",
    Mark.OK: ":white_check_mark:",
    Mark.WARN: ":warning:",
    Mark.ERROR: ":x:",
    Mark.INFO: ":information_source:",
}
SECTION_LIMIT = 2900  # Slack allows 3000 characters in a section's text
MAX_BLOCKS = 48  # of Slack's 50, two kept for buttons and a truncation note


def escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) as entities, so data cannot ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(lines: Sequence[str]) -> list[Block]:
    """Lines packed into as few sections as Slack's text limit allows."""
    out: list[Block] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > SECTION_LIMIT:
            out.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
            chunk, size = [], 0
        chunk.append(line[:SECTION_LIMIT])
        size += len(line) + 1
    if chunk:
        out.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
    return out


def _table_lines(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        mark = f"{MARK_EMOJI[row.mark]} " if row.mark else ""
        head, *rest = row.cells or [""]
        pairs = [
            f"{escape(col)} {escape(val)}"
            for col, val in zip(table.columns[1:], rest, strict=False)
            if val not in ("", "0", "-")
        ]
        lines.append(f"{mark}*{escape(head)}*" + (" · " + " · ".join(pairs) if pairs else ""))
    return lines


RUN_COMMAND = "run_command"
"""The action id prefix of a `Buttons` button: the press runs its value, a command line, as
the person who pressed (bot/incidents/actions.py), after Slack's own confirmation dialog."""


def render_blocks(view: Sequence[ViewBlock]) -> list[Block]:
    blocks: list[Block] = []
    for item in view:
        if isinstance(item, Heading):
            blocks.append(HeaderBlock(text=item.text[:150]))
        elif isinstance(item, Text):
            blocks += _sections([escape(item.text)])
        elif isinstance(item, Note):
            blocks += _sections([f"{MARK_EMOJI[item.mark]} {escape(item.text)}"])
        elif isinstance(item, Fields):
            blocks += _sections([f"*{escape(k)}*  {escape(v)}" for k, v in item.items])
        elif isinstance(item, Table):
            blocks += _sections(_table_lines(item))
        elif isinstance(item, Code):
            body = escape(item.text)[: SECTION_LIMIT - 10].replace("```", "'''")
            blocks.append(SectionBlock(text=MarkdownTextObject(text=f"```{body}```")))
        elif isinstance(item, Chart):
            # The picture itself is uploaded beside the message (files_upload_v2).
            blocks.append(
                ContextBlock(
                    elements=[
                        MarkdownTextObject(
                            text=f":chart_with_upwards_trend: {escape(item.title)}: picture below"
                        )
                    ]
                )
            )
        elif isinstance(item, Buttons):
            blocks.append(
                ActionsBlock(
                    elements=[
                        ButtonElement(
                            text=label[:75],
                            action_id=f"{RUN_COMMAND}:{i}",
                            value=command[:2000],
                            confirm=ConfirmObject(
                                title="Run this?",
                                text=confirm[:300],
                                confirm="Run it",
                                deny="Cancel",
                            ),
                        )
                        for i, (label, command, confirm) in enumerate(item.items[:5])
                    ]
                )
            )
        elif isinstance(item, Attachment):
            # The file itself is uploaded beside the message (files_upload_v2), as a chart is.
            blocks.append(
                ContextBlock(
                    elements=[
                        MarkdownTextObject(
                            text=f":paperclip: {escape(item.title)}: {escape(item.filename)} below"
                        )
                    ]
                )
            )
    if len(blocks) > MAX_BLOCKS:
        hidden = len(blocks) - MAX_BLOCKS + 1
        blocks = blocks[: MAX_BLOCKS - 1]
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"… {plural(hidden, 'more block')} cut; "
                        "use the CLI for the whole reply"
                    )
                ]
            )
        )
    return blocks


def fallback_text(view: Sequence[ViewBlock]) -> str:
    """The notification text Slack shows where blocks cannot be drawn."""
    for item in view:
        if isinstance(item, (Note, Text, Heading)):
            return item.text[:300]
    return "queueops"


def confirm_buttons(token: str, command: str) -> ActionsBlock:
    return ActionsBlock(
        block_id="queueops_confirmation",
        elements=[
            ButtonElement(
                text="Confirm",
                action_id="queueops_confirm",
                value=token,
                style="danger",
                confirm=ConfirmObject(
                    title="Run it?", text=f"Run `{command[:200]}` now?", confirm="Run", deny="Back"
                ),
            ),
            ButtonElement(text="Cancel", action_id="queueops_cancel", value=token),
        ],
    )


HEADER_LIMIT = 150
CONTEXT_ELEMENTS_LIMIT = 10
TEXT_LIMIT = 3000


def _mrkdwn(text: object) -> dict[str, Any] | None:
    """A plain mrkdwn text object as JSON, or None if it is anything more."""
    if type(text) is MarkdownTextObject and text.verbatim is None and len(text.text) <= TEXT_LIMIT:
        return {"text": text.text, "type": "mrkdwn"}
    return None


def _as_dict(block: Block) -> dict[str, Any]:
    """slack_sdk's to_dict checks every limit and walks every attribute by reflection, about a
    millisecond a reply, on the event loop, for blocks render_blocks already kept within
    Slack's limits. The three simple shapes it makes (a section, a header, a context of mrkdwn
    texts: most of every reply) are written here as to_dict would write them (a test holds
    the two equal); anything else, or anything over a limit, goes through to_dict."""
    if block.block_id is None:
        # SectionBlock keeps `fields` as [] when none are given; to_dict leaves it out.
        if type(block) is SectionBlock and not block.fields and block.accessory is None:
            text = _mrkdwn(block.text)
            if text is not None and block.expand is None:
                return {"text": text, "type": "section"}
        elif type(block) is HeaderBlock and type(block.text) is PlainTextObject:
            plain = block.text
            if len(plain.text) <= HEADER_LIMIT:
                out: dict[str, Any] = {"text": plain.text, "type": "plain_text"}
                if plain.emoji is not None:
                    out["emoji"] = plain.emoji
                return {"text": out, "type": "header"}
        elif type(block) is ContextBlock and len(block.elements) <= CONTEXT_ELEMENTS_LIMIT:
            texts = [_mrkdwn(e) for e in block.elements]
            if texts and all(t is not None for t in texts):
                return {"elements": texts, "type": "context"}
    return block.to_dict()


def as_dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    return [_as_dict(b) for b in blocks]
