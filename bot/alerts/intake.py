"""POST /alerts/alertmanager and POST /alerts/generic.

Alertmanager delivers at least once and retries only on 5xx: so 2xx once the alert is
stored in the stream, 5xx when it could not be stored or too many alerts wait to be
handled (it will be re-sent), 4xx only for what will never be valid (wrong token 401,
malformed 400, too big 413): a 4xx is dropped for good. The body is read whole, however
many TCP reads or chunks it arrives in. The bearer token is compared in constant time;
with no ALERT_WEBHOOK_TOKEN, intake refuses everything.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from bot.alerts.models import (
    AlertEvent,
    AlertmanagerPayload,
    GenericAlert,
    from_alertmanager,
    from_generic,
    summarize_error,
)
from bot.alerts.stream import AlertStream, BacklogFull
from bot.metrics import ALERTS_ACCEPTED, ALERTS_REFUSED

log = logging.getLogger(__name__)

MAX_ALERT_BODY = 256 * 1024
READ_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    pass


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


class AlertIntake:
    def __init__(
        self, stream: AlertStream, token: str | None, on_stored: Callable[[], None]
    ) -> None:
        self.stream = stream
        self.token = token
        self.on_stored = on_stored
        if token is None:
            log.warning("alert intake is off: set ALERT_WEBHOOK_TOKEN to accept alerts")

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return False
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    async def _body(self, request: web.Request) -> Any:
        """The whole body, up to MAX_ALERT_BODY (Content-Length or chunked), as JSON.
        `content.read(n)` returns what is buffered, not n bytes: read until the end."""
        if request.content_length is not None and request.content_length > MAX_ALERT_BODY:
            raise BodyTooLarge
        parts: list[bytes] = []
        size = 0
        while chunk := await request.content.read(READ_CHUNK):
            size += len(chunk)
            if size > MAX_ALERT_BODY:
                raise BodyTooLarge
            parts.append(chunk)
        return json.loads(b"".join(parts))

    async def _accept(
        self, request: web.Request, parse: Callable[[Any], AlertEvent]
    ) -> web.Response:
        if not self._authorized(request):
            if self.token is None:
                return _error(401, "alert intake is off: ALERT_WEBHOOK_TOKEN is not set")
            return _error(401, "missing or wrong bearer token")
        try:
            body = await self._body(request)
        except BodyTooLarge:
            return _error(413, f"body over {MAX_ALERT_BODY} bytes")
        except RecursionError:
            return _error(400, "malformed JSON: nested too deeply")
        except (ValueError, UnicodeDecodeError) as err:
            return _error(400, f"malformed JSON: {err}")
        try:
            event = parse(body)
        except ValidationError as err:
            return _error(400, summarize_error(err.errors()))
        except RecursionError:
            return _error(400, "malformed alert: nested too deeply")
        try:
            entry_id = await self.stream.append(event)
        except BacklogFull as full:
            log.error("alerts: refused %s: %s (503, to be sent again)", event.title, full)
            return _error(503, f"{full}; send it again later")
        except (RedisError, OSError) as err:
            log.error("alerts: could not store %s: %s", event.title, err)
            return _error(503, "could not store the alert; send it again")
        self.on_stored()
        return web.json_response({"ok": True, "id": entry_id, "group": event.group_id})

    async def alertmanager(self, request: web.Request) -> web.Response:
        return _counted(
            "alertmanager",
            await self._accept(
                request, lambda body: from_alertmanager(AlertmanagerPayload.model_validate(body))
            ),
        )

    async def generic(self, request: web.Request) -> web.Response:
        return _counted(
            "generic",
            await self._accept(
                request,
                lambda body: from_generic(GenericAlert.model_validate(body), datetime.now(UTC)),
            ),
        )


def _counted(endpoint: str, response: web.Response) -> web.Response:
    """/metrics: accepted, or refused by status code."""
    if response.status == 200:
        ALERTS_ACCEPTED.labels(endpoint).inc()
    else:
        ALERTS_REFUSED.labels(endpoint, str(response.status)).inc()
    return response
