"""Which queues exist, and what a person's word for one means.

A queue is named by its short name when that is unique, or always by its full name
`PREFIX:NAME` (bot/queues/keys.py). The catalogue holds the queues queueops works on:

- QUEUEOPS_QUEUES' entries: a full name is taken as it is; a short name under each prefix
  in scope (QUEUEOPS_PREFIX's list; unset: `bull`); a glob (`billing-*`, or with a `:`,
  `intelliflow:ocr-*`, matched against full names) is expanded against the queues that
  exist, as a short name is when several prefixes are in scope.
- Unset: every BullMQ queue that exists under the prefixes in scope, or under any prefix
  when QUEUEOPS_PREFIX is unset, DLQs excluded.

"What exists" is discovery: SCAN for `*:meta` keys whose hash carries the fields npm bullmq
5 writes there (`version` = "bullmq:…", set by every Queue object; `opts.maxLenEvents`, set
with the first job), a check done once per key found (a pipelined HMGET) and remembered
(a hash without those fields is asked again: it may be a queue whose meta has only `paused`
so far; a key that is no hash is not). SCAN
walks the whole keyspace whatever its MATCH, COUNT keys a call: a Redis of N keys costs
N/1000 calls, which `budget` reports from the last run (`last_cost`). It runs when first
needed and on `refresh_due` (the serve's slow cadence). A command that names a queue the
catalogue does not know looks for that one (`_look_for`: its meta key where it could be;
a SCAN only for a short name with no prefix configured, one per MISS_SCAN_MS at most), so
a queue created after start is found without a restart. A
configuration that needs no discovery (full names, or short names under one prefix) never
pays for it: the one-command snapshot stays one command.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from bot.errors import Ambiguous, NotFound, UsageError
from bot.queues.bullmq.slots import is_cluster_client
from bot.queues.keys import DEFAULT_PREFIX, QueueRef

SCAN_COUNT = 1000
CHECK_BATCH = 200
GLOB_CHARS = frozenset("*?[")
LISTED_MAX = 20
MISS_SCAN_MS = 10_000
"""The least time between two discoveries a command naming an unknown queue may start,
when only a SCAN could find it (a short name, no QUEUEOPS_PREFIX)."""
_PATTERN_MAX = 200
# A BullMQ meta hash's marks (npm bullmq 5: Queue's metaValues, getOrSetMaxEvents.lua).
META_FIELDS = ("version", "opts.maxLenEvents")


def is_glob(entry: str) -> bool:
    return any(c in GLOB_CHARS for c in entry)


def _scan_escape(text: str) -> str:
    """`text` as a literal inside a SCAN MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@dataclass(frozen=True)
class DiscoveryCost:
    """What the last discovery cost: SCAN calls and the meta checks of keys new to it."""

    at_ms: int
    scan_calls: int
    checks: int
    found: int

    @property
    def commands(self) -> int:
        return self.scan_calls + self.checks


def _looks_like_bullmq(fields: Sequence[object]) -> bool:
    version, max_events = fields
    return (isinstance(version, str) and version.startswith("bullmq")) or max_events is not None


class QueueCatalog:
    def __init__(
        self,
        redis: Redis,
        *,
        prefixes: Sequence[str] | None = None,
        entries: Sequence[str] | None = None,
        dlq_suffix: str = "-dlq",
        rediscover_ms: int = 600_000,
    ) -> None:
        self.redis = redis
        self.prefixes = tuple(prefixes) if prefixes else None
        self.entries = tuple(entries) if entries else None
        self.dlq_suffix = dlq_suffix
        self.rediscover_ms = rediscover_ms
        self.last_cost: DiscoveryCost | None = None
        self._verified: set[str] = set()
        self._miss_scan_at = float("-inf")
        self._rejected: set[str] = set()
        self._existing: list[QueueRef] | None = None
        self._queues: list[QueueRef] | None = None
        for entry in self.entries or ():
            if len(entry) > _PATTERN_MAX:
                raise UsageError(f"QUEUEOPS_QUEUES entry '{entry[:40]}…' is too long")

    # -- what is in scope -------------------------------------------------------------

    @property
    def scope(self) -> tuple[str, ...]:
        """The prefixes a short name may live under when nothing was discovered."""
        return self.prefixes or (DEFAULT_PREFIX,)

    @property
    def needs_discovery(self) -> bool:
        """Whether the configuration can only be read against what exists in Redis."""
        if self.entries is None:
            return True
        many = self.prefixes is not None and len(self.prefixes) > 1
        return any(is_glob(e) or (many and ":" not in e) for e in self.entries)

    def literal_names(self) -> tuple[str, ...] | None:
        """QUEUEOPS_QUEUES when it is plain short names under one prefix (each entry is one
        queue, known without Redis), else None."""
        if self.entries is None or self.needs_discovery:
            return None
        if any(":" in e for e in self.entries):
            return None
        return self.entries

    def _in_scope(self, ref: QueueRef) -> bool:
        return self.prefixes is None or ref.prefix in self.prefixes

    def is_dlq(self, ref: QueueRef) -> bool:
        return ref.name.endswith(self.dlq_suffix)

    # -- discovery --------------------------------------------------------------------

    async def discover(self) -> list[QueueRef]:
        """Every BullMQ queue in scope that exists now (see the module's docstring)."""
        match = "*:meta"
        if self.prefixes is not None and len(self.prefixes) == 1:
            match = f"{_scan_escape(self.prefixes[0])}:*:meta"
        candidates: list[str] = []
        found: set[QueueRef] = set()
        scan_calls = await self._scan(match, candidates)
        known = self._verified | self._rejected
        checks = await self._check([key for key in candidates if key not in known])
        for key in candidates:
            if key not in self._verified:
                continue
            try:
                ref = QueueRef.parse(key[: -len(":meta")])
            except ValueError:
                continue
            if self._in_scope(ref) and not self.is_dlq(ref):
                found.add(ref)
        self.last_cost = DiscoveryCost(
            at_ms=int(time.time() * 1000), scan_calls=scan_calls, checks=checks, found=len(found)
        )
        self._existing = sorted(found)
        return list(self._existing)

    async def _check(self, keys: list[str]) -> int:
        """Sort `keys` (`…:meta`, new to this catalogue) into BullMQ's and not, with
        pipelined HMGETs of its fields; returns how many were asked."""
        for start in range(0, len(keys), CHECK_BATCH):
            batch = keys[start : start + CHECK_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hmget(key, list(META_FIELDS))
                replies = await pipe.execute(raise_on_error=False)
            for key, reply in zip(batch, replies, strict=True):
                if isinstance(reply, list) and _looks_like_bullmq(reply):
                    self._verified.add(key)
                elif "WRONGTYPE" in str(reply):
                    # Not a hash: never a queue's meta. A hash without BullMQ's fields is
                    # asked again next time (a queue paused before its first job has only
                    # `paused` there until a Queue object writes `version`).
                    self._rejected.add(key)
        return len(keys)

    async def _scan(self, match: str, into: list[str]) -> int:
        """SCAN the whole keyspace for `match` (on a cluster, every master in turn);
        returns how many SCAN calls it took."""
        calls = 0
        if is_cluster_client(self.redis):
            cluster = cast(Any, self.redis)  # RedisCluster: one cursor per master
            for node in cluster.get_primaries():
                cursor = 0
                while True:
                    cursors, keys = await cluster.scan(
                        cursor=cursor, match=match, count=SCAN_COUNT, target_nodes=node
                    )
                    calls += 1
                    into.extend(str(k) for k in keys)
                    cursor = int(cursors[node.name])
                    if cursor == 0:
                        break
            return calls
        cursor = 0
        while True:
            cursor, keys = await self.redis.scan(cursor=cursor, match=match, count=SCAN_COUNT)
            calls += 1
            into.extend(str(k) for k in keys)
            if int(cursor) == 0:
                return calls

    def refresh_due(self, now_ms: int) -> bool:
        """The slow cadence: discovery is needed and the last one is older than
        `rediscover_ms` (the serve's scheduler asks; a CLI call discovers once)."""
        if not self.needs_discovery:
            return False
        return self.last_cost is None or now_ms - self.last_cost.at_ms >= self.rediscover_ms

    # -- the queues -------------------------------------------------------------------

    async def queues(self, *, refresh: bool = False) -> list[QueueRef]:
        """The queues queueops works on, each labelled as replies show it."""
        if self._queues is not None and not refresh:
            return list(self._queues)
        existing: list[QueueRef] = []
        if self.needs_discovery:
            existing = (
                await self.discover() if refresh or self._existing is None else list(self._existing)
            )
        chosen = existing if self.entries is None else self._expand(self.entries, existing)
        self._queues = _labelled(chosen)
        return list(self._queues)

    def _expand(self, entries: Iterable[str], existing: list[QueueRef]) -> list[QueueRef]:
        """Every entry's queues, in the entries' order (`_labelled` drops repeats)."""
        return [ref for entry in entries for ref in self._expand_one(entry, existing)]

    def _expand_one(self, entry: str, existing: list[QueueRef]) -> list[QueueRef]:
        if is_glob(entry):
            if ":" in entry:
                # Split at the last ':' like a full name and match each part on its own:
                # against `r.full`, `*` also matched ':', so `p:ocr-*` took the queues of a
                # prefix `p:ocr-legacy` (tests/test_addressing.py, full-name glob test).
                prefix, _, name = entry.rpartition(":")
                return [
                    r
                    for r in existing
                    if fnmatch.fnmatchcase(r.prefix, prefix) and fnmatch.fnmatchcase(r.name, name)
                ]
            return [r for r in existing if fnmatch.fnmatchcase(r.name, entry)]
        if ":" in entry:
            return [QueueRef.parse(entry)]
        if self.prefixes is not None and len(self.prefixes) > 1:
            under = [r for r in existing if r.name == entry]
            return under or [QueueRef(self.prefixes[0], entry)]
        return [QueueRef(self.scope[0], entry)]

    async def resolve(self, word: str) -> QueueRef:
        """The queue a person means by `word` (short or full name): NotFound when no known
        queue has it (after discovering again, if discovery applies), Ambiguous when a
        short name is under two prefixes."""
        found = self._lookup(word, await self.queues())
        if found is None and self.needs_discovery and await self._look_for(word):
            found = self._lookup(word, await self.queues())
        if found is not None:
            return found
        known = [q.shown for q in await self.queues()]
        listing = ", ".join(known[:LISTED_MAX]) + (", …" if len(known) > LISTED_MAX else "")
        source = "QUEUEOPS_QUEUES" if self.entries is not None else "discovered"
        raise NotFound(f"unknown queue '{word}' ({source}: {listing or 'none'})")

    async def _look_for(self, word: str) -> bool:
        """Whether a queue `word` names has appeared since the last discovery, added to
        what exists if so. Where it can only be (a full name; a short name under each
        configured prefix) its meta key is asked directly: one pipelined HMGET, not a SCAN
        of the keyspace per command that names a queue nobody has (a typo, or a viewer's
        loop). A short name under any prefix can only be found by a SCAN: then a whole
        discovery, at most one per MISS_SCAN_MS."""
        if ":" in word:
            places = [word]
        elif self.prefixes is not None:
            places = [f"{prefix}:{word}" for prefix in self.prefixes]
        else:
            now = time.monotonic()
            if now - self._miss_scan_at < MISS_SCAN_MS / 1000:
                return False
            self._miss_scan_at = now
            await self.queues(refresh=True)
            return True
        keys = [f"{place}:meta" for place in places]
        await self._check([k for k in keys if k not in self._verified | self._rejected])
        added = set()
        for key in keys:
            ref = QueueRef.parse(key[: -len(":meta")])
            if key in self._verified and self._in_scope(ref) and not self.is_dlq(ref):
                added.add(ref)
        if not added:
            return False
        self._existing = sorted({*(self._existing or []), *added})
        self._queues = None  # expanded again from what exists, without a SCAN
        return True

    @staticmethod
    def _lookup(word: str, known: list[QueueRef]) -> QueueRef | None:
        if ":" in word:
            return next((q for q in known if q.full == word), None)
        matches = [q for q in known if q.name == word]
        if len(matches) > 1:
            names = ", ".join(q.full for q in matches)
            raise Ambiguous(f"queue '{word}' is under {len(matches)} prefixes: {names}; name one")
        return matches[0] if matches else None


def _labelled(queues: Iterable[QueueRef]) -> list[QueueRef]:
    """Each queue shown by its short name where that is unique, else by its full name
    (in the order given, once each)."""
    refs = list(dict.fromkeys(queues))
    by_name: dict[str, int] = defaultdict(int)
    for ref in refs:
        by_name[ref.name] += 1
    return [ref.labelled(ref.name if by_name[ref.name] == 1 else ref.full) for ref in refs]
