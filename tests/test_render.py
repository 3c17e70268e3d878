"""Rendering a view: Block Kit for Slack (within Slack's limits, data escaped) and text."""

from __future__ import annotations

from bot.render_text import render_text
from bot.slack.blocks import as_dicts, fallback_text, render_blocks
from commands.view import Code, Fields, Mark, Note, Row, Table


def test_a_table_is_one_line_per_row_with_its_mark_and_no_zeros() -> None:
    table = Table(
        columns=["queue", "waiting", "failed"],
        rows=[Row(mark=Mark.BACKLOG, cells=["batch-jobs", "1200", "0"])],
    )
    [section] = as_dicts(render_blocks([table]))
    assert section["text"]["text"] == ":large_yellow_circle: *batch-jobs* · waiting 1200"
    assert "WAITING" in render_text([table]) and "1200" in render_text([table])


def test_data_cannot_ping_or_link_and_limits_hold() -> None:
    blocks = as_dicts(
        render_blocks(
            [
                Note(mark=Mark.ERROR, text="<!channel> & <https://evil>"),
                Code(text="```" + "x" * 5000),
                *[Fields(items=[("k", str(i))]) for i in range(80)],
            ]
        )
    )
    assert blocks[0]["text"]["text"] == ":x: &lt;!channel&gt; &amp; &lt;https://evil&gt;"
    assert len(blocks[1]["text"]["text"]) <= 3000 and blocks[1]["text"]["text"].count("```") == 2
    assert len(blocks) <= 50 and "more blocks cut" in blocks[-1]["elements"][0]["text"]
    assert fallback_text([Note(mark=Mark.OK, text="done")]) == "done"
