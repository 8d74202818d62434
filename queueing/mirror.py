"""The waiting room's read mirror in Redis: PostgreSQL decides, Redis answers.

What is mirrored, per queue token (a hash under its secret): id, concert, owner,
status, `active_until`, `ended_at`, end reason, the last presence PostgreSQL knows
and the last poll Redis saw. Per concert, a sorted set of the waiting token ids
(ZRANK is the FIFO position) and one of the active ones (scored by `active_until`).

How it stays true:

- **Written only after commit** (`transaction.on_commit`) by the services that
  change a token, so it never shows what PostgreSQL might roll back.
- **Monotonic.** A token only moves forward: waiting (1) → active (2) → ended (3),
  and a turn's end only moves later. The write script ignores anything older than
  what the hash holds, so two processes' after-commit writes landing out of order
  cannot put a token back.
- **Trusted only when ready.** Reads use the mirror only while its `ready` marker
  exists; the marker is set by a rebuild. A Redis that restarted (it keeps nothing
  on disk) has no marker, so every read takes the PostgreSQL path until the next
  beat tick rebuilds the mirror: no manual step.
- **Repaired from PostgreSQL** by `rebuild()` (beat). It reads the mirror first and
  PostgreSQL second, so what it writes is at least as new as what it replaces, and
  it writes with compare-and-set on the hash's write counter, so a transition that
  lands in between is never overwritten by the repair.
- **Fails soft.** Any Redis error makes a read a miss (the PostgreSQL path
  answers) and a write a no-op (the rebuild repairs it), and trips the cache's
  breaker so an outage costs one timeout per process per interval.

Presence: a poll or gate pass of a waiting fan records the time in Redis (no SQL).
`presence_flush()` moves those times into `last_seen_at` in PostgreSQL in one
statement; the idle sweep calls it first, so only PostgreSQL ever expires a fan.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from config.cache import (
    REDIS_DOWN,
    Reply,
    RoundTrip,
    redis_backend,
    redis_client,
    redis_eval,
    redis_failed,
    redis_pipelined,
    redis_scripts_pipelined,
)
from queueing.models import QueueToken, is_token_key

logger = logging.getLogger(__name__)
Status = QueueToken.Status

RANK = {
    Status.WAITING: 1,
    Status.ACTIVE: 2,
    Status.EXPIRED: 3,
    Status.LEFT: 3,
    Status.ENDED: 3,
}
# The live states the mirror holds. A pre-queue token has no place yet and is read
# from PostgreSQL (it is mirrored once the sale's start gives it one).
MIRRORED = (Status.WAITING, Status.ACTIVE)
LIVE_TTL = 24 * 3600  # a live token's hash lives this long after its last write
ENDED_TTL = 3600  # an ended token still answers polls ("your turn ended") for an hour
CHUNK = 5000

# KEYS: token hash, waiting zset, active zset. ARGV: id, concert, user, rank, status,
# active_until, ended_at, end_reason, last_seen, ttl, cas ('' = monotonic merge,
# else the write counter the hash must still hold).
_PUT = """
local cur = redis.call('HMGET', KEYS[1], 'r', 'au', 'n')
local rank = tonumber(ARGV[4])
local au = ARGV[6]
if ARGV[11] ~= '' then
  if (cur[3] or '0') ~= ARGV[11] then return 0 end
else
  local r = tonumber(cur[1] or '0')
  if r > rank then return 0 end
  if r == rank and cur[2] and cur[2] ~= '' and (au == '' or tonumber(cur[2]) > tonumber(au)) then
    au = cur[2]
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'c', ARGV[2], 'u', ARGV[3], 'r', ARGV[4],
  's', ARGV[5], 'au', au, 'ea', ARGV[7], 'er', ARGV[8], 'ls', ARGV[9])
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[10]))
if rank == 1 then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif rank == 2 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], tonumber(au), ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 1
"""

# queueing.selectors.poll_after_seconds, in Lua, for the read script: a poll is paced
# (its next deadline set) in the same round trip that reads it. pos: the place in
# line, -1 unless waiting; rate: admissions a second; floor, front, maxb: as in
# selectors. A test holds the two equal over a grid of inputs.
_POLL_AFTER = """
local function poll_after(pos, rate, floor, front, maxb)
  if pos < 0 then return math.max(5, floor) end
  local base
  if pos <= 10 then base = front else base = math.ceil(front * math.sqrt(pos / 10)) end
  base = math.min(base, maxb)
  base = math.min(base, math.max(front, math.ceil(pos / rate)))
  return math.max(base, floor)
end
"""

# One round trip for a poll or a gate pass. KEYS: token hash, poll-deadline cache key,
# ready marker, presence hash. ARGV: now (ms), mirror key base, record presence (0/1),
# check the poll deadline and pace the poll (0/1), then for pacing: the poll budget's
# floor, FRONT_POLL, MAX_BASE_POLL, the shared rate's cache key less the concert id,
# and the rate's scale.
# Returns nil (not mirrored: use PostgreSQL), {'early', not_before_ms}, or
# {fields..., 'pos', position} with position -1 unless waiting, and when paced,
# 'pa', the seconds to the next poll, and 'rate', the shared rate it used (a poll
# whose concert has no shared rate yet is not paced here: Python paces it).
_READ = (
    _POLL_AFTER
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return nil end
if ARGV[4] == '1' then
  local nb = redis.call('GET', KEYS[2])
  if nb and tonumber(ARGV[1]) < tonumber(nb) then
    local c = redis.call('HGET', KEYS[1], 'c')
    if c then  -- counted per concert and minute, for the operators' dashboard
      local k = ARGV[2] .. ':early:' .. c .. ':' .. math.floor(tonumber(ARGV[1]) / 60000)
      redis.call('INCR', k)
      redis.call('EXPIRE', k, 3600)
    end
    return {'early', nb}
  end
end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return nil end
local t = {}
for i = 1, #h, 2 do t[h[i]] = h[i + 1] end
local pos = -1
if t['r'] == '1' then
  local z = redis.call('ZRANK', ARGV[2] .. ':w:' .. t['c'], t['id'])
  if not z then return nil end
  pos = z + 1
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'lp', ARGV[1])
    redis.call('HSET', KEYS[4], t['id'], ARGV[1])
  end
end
table.insert(h, 'pos')
table.insert(h, tostring(pos))
if ARGV[4] == '1' then
  local rate = redis.call('GET', ARGV[8] .. t['c'])
  if rate or pos < 0 then
    local pa = poll_after(pos, (tonumber(rate) or 1) / tonumber(ARGV[9]), tonumber(ARGV[5]),
      tonumber(ARGV[6]), tonumber(ARGV[7]))
    local tol = math.min(1.0, pa * 0.2)
    redis.call('SET', KEYS[2], math.floor(tonumber(ARGV[1]) + (pa - tol) * 1000), 'EX', pa + 5)
    table.insert(h, 'pa')
    table.insert(h, tostring(pa))
    table.insert(h, 'rate')
    table.insert(h, rate or '0')
  end
end
return h
"""
)


@dataclass(frozen=True)
class Paced:
    """How the read script paced a poll: the place it saw, the seconds to the next
    poll (the deadline is set), and the shared rate it used (None: not needed)."""

    position: int  # -1 unless waiting
    poll_after: int
    rate: int | None  # in the shared estimate's units (selectors.RATE_SCALE)


class Early(Exception):
    def __init__(self, not_before_ms: int) -> None:
        self.not_before_ms = not_before_ms


def enabled() -> bool:
    return redis_backend() is not None


def _base() -> str:
    return redis_backend().make_key("qm")


def _keys(key: str, concert_id: int | str) -> list[str]:
    base = _base()
    return [f"{base}:t:{key}", f"{base}:w:{concert_id}", f"{base}:a:{concert_id}"]


def _ts(value: datetime | None) -> str:
    return "" if value is None else str(int(value.timestamp() * 1000))


def _dt(ms: str | bytes | None) -> datetime | None:
    if ms in (None, "", b""):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


@dataclass(frozen=True)
class Row:
    """A token's state as PostgreSQL has it (what the mirror is written from)."""

    id: int
    key: str
    concert_id: int
    user_id: int
    status: str
    active_until: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str = ""
    last_seen_at: datetime | None = None

    @classmethod
    def of(cls, token: QueueToken) -> Row:
        return cls(
            id=token.pk,
            key=token.key,
            concert_id=token.concert_id,
            user_id=token.user_id,
            status=token.status,
            active_until=token.active_until,
            ended_at=token.ended_at,
            end_reason=token.end_reason,
            last_seen_at=token.last_seen_at,
        )


ROW_FIELDS = (
    "id",
    "key",
    "concert_id",
    "user_id",
    "status",
    "active_until",
    "ended_at",
    "end_reason",
    "last_seen_at",
)


def _put_args(row: Row, cas: str = "") -> tuple[list[str], list[str]]:
    rank = RANK[row.status]
    return _keys(row.key, row.concert_id), [
        str(row.id),
        str(row.concert_id),
        str(row.user_id),
        str(rank),
        row.status,
        _ts(row.active_until),
        _ts(row.ended_at),
        row.end_reason or "",
        _ts(row.last_seen_at),
        str(LIVE_TTL if rank < 3 else ENDED_TTL),
        cas,
    ]


def put(rows: Sequence[Row]) -> None:
    """Write these token states (monotonic merge), in one pipelined round trip."""
    rows = [row for row in rows if row.status != Status.PRE_QUEUE]
    client = redis_client()
    if client is None or not rows:
        return
    try:
        redis_scripts_pipelined(client, [(_PUT, *_put_args(row)) for row in rows])
    except REDIS_DOWN as exc:
        redis_failed(exc)


def put_after_commit(rows: Iterable[Row]) -> None:
    """Mirror these states once the caller's transaction commits (now, if none)."""
    if not enabled():
        return
    rows = list(rows)
    if rows:
        transaction.on_commit(lambda: put(rows))


def read(
    *,
    key: str,
    now: datetime,
    poll_key: str | None = None,
    pacing: Sequence[str] = (),
    presence: bool = True,
) -> QueueToken | None:
    """The token as the mirror has it (one round trip, no SQL), or None: not mirrored,
    or Redis is down; the caller then reads PostgreSQL.

    Raises Early when `poll_key` names a poll deadline that has not passed. With
    `poll_key` and `pacing` (the script's pacing arguments, see _READ), the poll is
    also paced: the token's `paced_at_read` says how. The returned token is unsaved
    (read-only), with `position_at_read` set when waiting.
    """
    backend = redis_backend()
    client = redis_client(backend)
    if client is None or not is_token_key(key):
        return None
    try:
        keys, args = _read_args(key, now, poll_key, pacing, presence, backend=backend)
        found = redis_eval(client, _READ, keys, args)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return None
    return _token_read(found, key=key, now=now, presence=presence)


def read_later(trip: RoundTrip, *, key: str, now: datetime) -> Reply:
    """`read` (unpaced, presence recorded), in a RoundTrip; `read_reply` gives what
    `read` gives. A key that is no token's is never sent (its reply is down)."""
    if trip.client is None or not is_token_key(key):
        return Reply()
    return trip.script(_READ, *_read_args(key, now, None, (), True, backend=trip.backend))


def read_reply(reply: Reply, *, key: str, now: datetime) -> QueueToken | None:
    return None if reply.down else _token_read(reply.value, key=key, now=now, presence=True)


def put_read_and_count(
    row: Row, *, now: datetime, poll_key: str, pacing: Sequence[str], count_active: bool = False
) -> tuple[QueueToken | None, int | None]:
    """A new token's first write and its first read, paced as a poll, and with
    `count_active` the concert's turns not yet lapsed as the mirror has them, in one
    pipelined round trip (a line-up): (read, count), each None if Redis did not
    answer. Call only once the token has committed.

    The count is a hint for the line-up's admission pre-check only (an admission
    decides under the room lock, from PostgreSQL): written after commit, it can lag
    by a turn just ended or just granted, never by a turn that lapsed."""
    client = redis_client()
    if client is None or row.status == Status.PRE_QUEUE:
        return None, None
    calls = [
        (_PUT, *_put_args(row)),
        (_READ, *_read_args(row.key, now, poll_key, pacing, presence=False)),
    ]
    if count_active:
        active = _keys(row.key, row.concert_id)[2]
        calls.append((None, "ZCOUNT", active, f"({_ts(now)}", "+inf"))
    try:
        replies = redis_pipelined(client, calls)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return None, None
    count = int(replies[2]) if count_active else None
    try:
        return _token_read(replies[1], key=row.key, now=now, presence=False), count
    except Early:  # a new token has no deadline yet; never, but never a 500 either
        return None, count


def _read_args(
    key: str,
    now: datetime,
    poll_key: str | None,
    pacing: Sequence[str],
    presence: bool,
    *,
    backend=None,
) -> tuple[list[str], list[str]]:
    backend = backend or redis_backend()
    base = backend.make_key("qm")
    return [
        f"{base}:t:{key}",
        backend.make_key(poll_key) if poll_key else f"{base}:none",
        f"{base}:ready",
        f"{base}:p",
    ], [
        _ts(now), base, "1" if presence else "0", "1" if poll_key else "0",
        *(pacing if poll_key else ()),
    ]  # fmt: skip


_TOKEN_COLUMNS = tuple(field.attname for field in QueueToken._meta.concrete_fields)


def _token_read(found, *, key: str, now: datetime, presence: bool) -> QueueToken | None:
    if found is None:
        return None
    if found[0] == b"early":
        raise Early(int(found[1]))
    t = {found[i].decode(): found[i + 1].decode() for i in range(0, len(found), 2)}
    seen = [v for v in (_dt(t.get("ls")), _dt(t.get("lp"))) if v is not None]
    values = {
        "id": int(t["id"]),
        "key": key,
        "concert_id": int(t["c"]),
        "user_id": int(t["u"]),
        "status": t["s"],
        "active_until": _dt(t.get("au")),
        "ended_at": _dt(t.get("ea")),
        "end_reason": t.get("er", ""),
        "last_seen_at": max(seen) if seen else now,
    }
    # Positional, in the model's column order: Django's fast path (a poll makes one).
    # The columns the mirror does not hold (created_at, admitted_at) are None, as
    # with keywords; a test holds the two equal.
    token = QueueToken(*[values.get(name) for name in _TOKEN_COLUMNS])
    token.from_mirror = True
    if t["pos"] != "-1":
        token.position_at_read = int(t["pos"])
    if "pa" in t:
        token.paced_at_read = Paced(
            position=int(t["pos"]), poll_after=int(t["pa"]), rate=int(t["rate"]) or None
        )
    if presence and token.status == Status.WAITING:
        token.last_seen_at = now  # recorded in the same round trip
    return token


# --- presence ----------------------------------------------------------------


def presence_flush() -> int:
    """Move the presence Redis recorded into `last_seen_at` in PostgreSQL.

    The presence hash is renamed away atomically, so polls during the flush start a
    new one and nothing is counted twice or lost. Returns the tokens updated.
    """
    client = redis_client()
    if client is None:
        return 0
    base = _base()
    taken = f"{base}:p:flush:{uuid.uuid4().hex}"
    try:
        client.rename(f"{base}:p", taken)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return 0
    except Exception:  # no presence recorded since the last flush
        return 0
    updated = 0
    try:
        cursor_pos = 0
        while True:
            cursor_pos, chunk = client.hscan(taken, cursor_pos, count=CHUNK)
            if chunk:
                updated += _presence_apply({int(k): int(v) for k, v in chunk.items()})
            if cursor_pos == 0:
                break
        client.delete(taken)
    except REDIS_DOWN as exc:
        redis_failed(exc)
    return updated


# Row locks in id order, like admission and every ending (they lock waiting tokens
# in id order): an UPDATE ... FROM locks in whatever order its join produces, and the
# 20,000-fan rehearsal deadlocked an admission run with a flush that way.
_PRESENCE_SQL = """
WITH locked AS (
    SELECT t.id, s.at FROM {table} t
    JOIN unnest(%s::bigint[], %s::timestamptz[]) AS s(id, at) ON t.id = s.id
    WHERE t.status = 'waiting' AND t.last_seen_at < s.at
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
)
UPDATE {table} t SET last_seen_at = locked.at FROM locked WHERE t.id = locked.id
"""


def _presence_apply(seen: dict[int, int]) -> int:
    ids = list(seen)
    stamps = [datetime.fromtimestamp(seen[i] / 1000, tz=UTC) for i in ids]
    with connection.cursor() as cursor:
        cursor.execute(_PRESENCE_SQL.format(table=QueueToken._meta.db_table), [ids, stamps])
        return cursor.rowcount


# --- repair --------------------------------------------------------------------


def _rows(queryset) -> list[Row]:
    return [Row(*values) for values in queryset.values_list(*ROW_FIELDS)]


def _mirror_state(client, rows: Sequence[Row]) -> list[tuple[str, str, str, bool]]:
    """(rank, active_until, write counter, listed in its concert's set) per token."""
    base = _base()
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.hmget(f"{base}:t:{row.key}", "r", "au", "n")
        zset = {Status.WAITING: "w", Status.ACTIVE: "a"}.get(row.status)
        if zset:
            pipe.zscore(f"{base}:{zset}:{row.concert_id}", row.id)
        else:
            pipe.exists(f"{base}:none")  # keeps two answers per token
    got = pipe.execute()
    return [
        (*((v or b"").decode() for v in fields), listed is not None and listed is not False)
        for fields, listed in zip(got[0::2], got[1::2], strict=True)
    ]


def _repair(client, rows: Sequence[Row]) -> int:
    """Make these tokens' hashes say what PostgreSQL says. Returns the hashes written."""
    if not rows:
        return 0
    before = _mirror_state(client, rows)
    stale = [
        (row, state[2])
        for row, state in zip(rows, before, strict=True)
        if state[0] != str(RANK[row.status]) or state[1] != _ts(row.active_until) or not state[3]
    ]
    if not stale:
        return 0
    # Read PostgreSQL again, after the mirror: this state is at least as new as the
    # hash it replaces. The write counter guards against a transition in between.
    fresh = {r.id: r for r in _rows(QueueToken.objects.filter(id__in=[r.id for r, _ in stale]))}
    calls = [
        (_PUT, *_put_args(fresh[row.id], cas=counter or "0")) for row, counter in stale
        if row.id in fresh
    ]  # fmt: skip
    return sum(redis_scripts_pipelined(client, calls))


def _zset_extras(client, concert_id: int) -> int:
    """Ids in a concert's zsets whose token PostgreSQL does not have in that state."""
    base = _base()
    fixed = 0
    for suffix, status in (("w", Status.WAITING), ("a", Status.ACTIVE)):
        zkey = f"{base}:{suffix}:{concert_id}"
        members = [int(m) for m in client.zrange(zkey, 0, -1)]
        if not members:
            continue
        truth = set()
        for start in range(0, len(members), CHUNK):
            part = members[start : start + CHUNK]
            truth |= set(
                QueueToken.objects.filter(id__in=part, status=status).values_list("id", flat=True)
            )
        extras = [m for m in members if m not in truth]
        if not extras:
            continue
        rows = _rows(QueueToken.objects.filter(id__in=extras))
        fixed += _repair_forced(client, rows)
        gone = set(extras) - {r.id for r in rows}
        if gone:
            client.zrem(zkey, *gone)
            fixed += len(gone)
    return fixed


def _repair_forced(client, rows: Sequence[Row]) -> int:
    """Rewrite these tokens from PostgreSQL (read after the mirror), under compare-and-set."""
    if not rows:
        return 0
    before = _mirror_state(client, rows)
    fresh = {r.id: r for r in _rows(QueueToken.objects.filter(id__in=[r.id for r in rows]))}
    calls = [
        (_PUT, *_put_args(fresh[row.id], cas=state[2] or "0"))
        for row, state in zip(rows, before, strict=True)
        if row.id in fresh
    ]
    return sum(redis_scripts_pipelined(client, calls))


def rebuild(*, concert_id: int | None = None) -> int | None:
    """Repair the mirror from PostgreSQL, then mark it ready. Returns the entries
    repaired, or None when there is no Redis to mirror into (or it is down)."""
    client = redis_client()
    if client is None:
        return None
    tokens = QueueToken.objects.filter(status__in=MIRRORED)
    if concert_id is not None:
        tokens = tokens.filter(concert_id=concert_id)
    repaired = 0
    try:
        last = 0
        while True:
            rows = _rows(tokens.filter(id__gt=last).order_by("id")[:CHUNK])
            if not rows:
                break
            repaired += _repair(client, rows)
            last = rows[-1].id
        concerts = (
            [concert_id]
            if concert_id is not None
            else _concerts_in_mirror(client) | set(tokens.values_list("concert_id", flat=True))
        )
        for cid in sorted(concerts):
            repaired += _zset_extras(client, cid)
        client.set(f"{_base()}:ready", "1")
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return None
    if repaired:
        logger.warning("queue mirror: repaired %d entries from PostgreSQL", repaired)
    return repaired


def _concerts_in_mirror(client) -> set[int]:
    base = _base()
    found = set()
    for suffix in ("w", "a"):
        for name in client.scan_iter(match=f"{base}:{suffix}:*", count=1000):
            found.add(int(name.decode().rsplit(":", 1)[1]))
    return found


def is_ready() -> bool:
    client = redis_client()
    if client is None:
        return False
    try:
        return bool(client.exists(f"{_base()}:ready"))
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return False


def ensure_ready() -> int | None:
    """The beat's check: rebuild when the marker is gone (a Redis restart), or when
    the cheap counts disagree with PostgreSQL's. Returns what rebuild() returned,
    or 0 when nothing was needed."""
    client = redis_client()
    if client is None:
        return None
    try:
        if is_ready() and not _counts_drifted(client):
            return 0
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return None
    return rebuild()


def _counts_drifted(client) -> bool:
    from django.db.models import Count

    base = _base()
    truth = {
        (row["concert_id"], row["status"]): row["n"]
        for row in QueueToken.objects.filter(status__in=MIRRORED)
        .values("concert_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    concerts = {c for c, _ in truth} | _concerts_in_mirror(client)
    pipe = client.pipeline(transaction=False)
    order = []
    for cid in sorted(concerts):
        for suffix, status in (("w", Status.WAITING), ("a", Status.ACTIVE)):
            pipe.zcard(f"{base}:{suffix}:{cid}")
            order.append((cid, status))
    counts = pipe.execute()
    return any(truth.get(k, 0) != n for k, n in zip(order, counts, strict=True))


def mark_ready() -> None:
    """Trust the mirror as it is (tests start from an empty database and mirror)."""
    client = redis_client()
    if client is not None:
        client.set(f"{_base()}:ready", "1")


def forget() -> None:
    """Drop the ready marker (tests; an operator forcing the PostgreSQL path)."""
    client = redis_client()
    if client is not None:
        try:
            client.delete(f"{_base()}:ready")
        except REDIS_DOWN as exc:
            redis_failed(exc)


def early_polls(*, concert_id: int, minutes: Sequence[int]) -> list[int]:
    """Early polls refused per minute (minutes since the epoch) for the concert, as the
    mirror's read script counted them; zeros without Redis. Polls refused while the
    mirror is not ready (the PostgreSQL path) are not counted."""
    client = redis_client()
    if client is None or not minutes:
        return [0] * len(minutes)
    try:
        counts = client.mget([f"{_base()}:early:{concert_id}:{m}" for m in minutes])
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return [0] * len(minutes)
    return [int(c) if c else 0 for c in counts]
