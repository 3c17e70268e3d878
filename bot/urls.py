"""URLs as they may be shown: never with the credentials they carry.

REDIS_URL and DRAIN_URL may hold `user:password@` (and a Redis URL also `?password=`).
Whatever shows a URL (a configuration error, a --json document, a Slack reply, the audit
stream, a log line) shows `url_fit_to_show(url)`; free text that may quote one goes through
`hide_url_credentials`, which applies the same rule to every URL in it.
"""

from __future__ import annotations

import re

HIDDEN = "***"

# Query parameters that carry a secret (redis-py reads `?password=`, apps `?token=`...).
_SECRET_QUERY = re.compile(
    r"([?&;](?:password|passwd|pass|pwd|token|secret|key|apikey|api_key|access_token|auth"
    r"|sig|signature|credentials?)=)[^&;#\s]*",
    re.IGNORECASE,
)
# A scheme, then everything up to the next blank: the URL as a person would select it.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://\S*")


def url_fit_to_show(url: str) -> str:
    """`url` without `user:password@` and with secret query values hidden.

    The userinfo is everything before the last '@' ahead of the first '/' after the scheme,
    so a password with an unescaped '@', '?' or '#' is dropped whole rather than half shown
    (urlsplit would cut it at the '#' and show the rest).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # No scheme ('user:pw@host', '//user:pw@host/db'): still never show what sits
        # before an '@' of the authority, the part a person would read as credentials.
        lead = len(url) - len(url.lstrip("/"))
        authority, slash, tail = url[lead:].partition("/")
        if "@" in authority:
            url = url[:lead] + authority.rpartition("@")[2] + slash + tail
        return _SECRET_QUERY.sub(rf"\1{HIDDEN}", url)
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}://" + _SECRET_QUERY.sub(rf"\1{HIDDEN}", authority + slash + tail)


def hide_url_credentials(text: str) -> str:
    """Free text (an error message, a log line) with every URL in it fit to show."""
    return _URL_IN_TEXT.sub(lambda m: url_fit_to_show(m.group(0)), text)
