"""Draw a reply's view as plain text for the terminal and the shell."""

from __future__ import annotations

from collections.abc import Sequence

from commands.view import (
    Attachment,
    Block,
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

_NOTE_TAG = {
    Mark.OK: "ok",
    Mark.INFO: "--",
    Mark.WARN: "!!",
    Mark.ERROR: "error:",
    Mark.PAUSED: "||",
    Mark.HEALTHY: "ok",
    Mark.BACKLOG: "!!",
    Mark.FAILING: "!!",
    Mark.NO_WORKERS: "!!",
}
MAX_CELL = 60


def _cell(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CELL else flat[: MAX_CELL - 1] + "…"


def _table(block: Table) -> list[str]:
    rows = [[_cell(c) for c in row.cells] for row in block.rows]
    header = [c.upper() for c in block.columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    return [line(header), *(line(r) for r in rows)]


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """Scaled from the lowest to the highest value, so a trend shows at any depth."""
    lo, hi = min(values, default=0), max(values, default=0)
    span = (hi - lo) or 1
    return "".join(SPARKS[(v - lo) * (len(SPARKS) - 1) // span] for v in values)


def _chart(block: Chart) -> list[str]:
    lines = [block.title]
    for queue, points in block.series.items():
        values = [v for _, v in points]
        if len(values) < 2:
            lines.append(f"  {queue}: not enough samples yet (queueops serve takes one a tick)")
        else:
            lines.append(
                f"  {queue}  {sparkline(values)}  min {min(values)}, "
                f"max {max(values)}, now {values[-1]}"
            )
    return lines


def render_text(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["", f"{block.text}"]
        elif isinstance(block, Text):
            out.append(block.text)
        elif isinstance(block, Note):
            out.append(f"{_NOTE_TAG.get(block.mark, '--')} {block.text}")
        elif isinstance(block, Fields):
            width = max((len(k) for k, _ in block.items), default=0)
            out += [f"  {k.ljust(width)}  {v}" for k, v in block.items]
        elif isinstance(block, Table):
            out += _table(block)
        elif isinstance(block, Code):
            out += ["  " + line for line in block.text.splitlines()]
        elif isinstance(block, Chart):
            out += _chart(block)
        elif isinstance(block, Buttons):
            out += [f"  {label}: {command}" for label, command, _ in block.items]
        elif isinstance(block, Attachment):
            size = len(block.content.encode("utf-8"))
            tail = f"; {block.note}" if block.note else ""
            out.append(f"-- {block.title}: a file in Slack ({size:,} bytes){tail}")
    return "\n".join(out)
