"""Reply: what every command returns. `data()` is the --json document, `view()` the picture."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from commands.view import Block, Mark, Note


class Reply(BaseModel):
    """Base of every command's typed reply: snake_case in Python, camelCase in JSON (every
    field; the keys of data maps, such as a snapshot's `counts`, are data and stay)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    ok: bool = True

    @property
    def nothing_to_do(self) -> bool:
        """A preview that found nothing to act on: said as it is, with nothing to confirm."""
        return False

    def jobs_moved(self) -> dict[str, int]:
        """The jobs this reply says were moved, by what happened to them
        ({"quarantined": 3}, {"replayed": 10}): counted in an incident's impact when the
        command ran in its channel. Empty for reads, previews and dry runs."""
        return {}

    def data(self) -> dict[str, Any]:
        """The JSON document `--json` prints (camelCase, like npm bullmq)."""
        return self.model_dump(mode="json", by_alias=True)

    def view(self) -> list[Block]:
        raise NotImplementedError


class ErrorReply(Reply):
    """A failure, as one line; `exit_code`: 1 failed, 2 usage/config."""

    ok: bool = False
    message: str
    exit_code: int = 1

    def data(self) -> dict[str, Any]:
        return {"ok": False, "error": self.message}

    def view(self) -> list[Block]:
        return [Note(mark=Mark.ERROR, text=self.message)]
