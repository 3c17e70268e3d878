"""Reply: what every command returns. `data()` is the --json document, `view()` the picture."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from commands.view import Block, Mark, Note


class Reply(BaseModel):
    """Base of every command's typed reply."""

    ok: bool = True

    def data(self) -> dict[str, Any]:
        """The JSON document `--json` prints (camelCase, like npm bullmq and DESIGN.md)."""
        return self.model_dump(mode="json", by_alias=True)

    def view(self) -> list[Block]:
        raise NotImplementedError


class ErrorReply(Reply):
    """A failure, as one line; `exit_code` follows DESIGN.md (1 failed, 2 usage/config)."""

    ok: bool = False
    message: str
    exit_code: int = 1

    def data(self) -> dict[str, Any]:
        return {"ok": False, "error": self.message}

    def view(self) -> list[Block]:
        return [Note(mark=Mark.ERROR, text=self.message)]
