--[[
  replay: move the oldest jobs of a DLQ back into their queue, each job atomically.

  Why a script of our own: PyPI bullmq (and npm bullmq) has no atomic "move this job from
  another queue". Adding through the library and then deleting the DLQ copy is two steps,
  and between them a second replay sees the copy and adds the job again, or the job runs,
  completes and is removed (removeOnComplete) before the copy is gone, and a resumed replay
  adds it once more: jobs ran twice and each replay counted every job it saw. Here the job
  is written into the queue and the DLQ copy dropped in one script, so Redis runs all of it
  or none of it: a crash leaves each job wholly in the DLQ or wholly back in its queue, and
  a concurrent replay finds nothing left to move. The script picks the ids itself (the
  oldest of the DLQ), so concurrent replays share the work instead of racing for it.

  The job is laid out exactly as npm bullmq 5's addStandardJob / addPrioritizedJob
  (includes storeJob, getTargetQueueList, addJobInTargetList, addJobWithPriority,
  getPriorityScore, addBaseMarkerIfNeeded, getOrSetMaxEvents) lay out a new job with a
  custom id: the hash (name, data, opts, timestamp, delay 0, priority); a paused queue's
  job goes to `paused`, otherwise to `wait` (LPUSH, or RPUSH for lifo), a priority job to
  `prioritized` with the priority counter's score; the marker is set unless the queue is
  paused or at its global concurrency; "added" and "waiting" events. The delay is dropped
  (a replayed job runs now), as are the options tying it to a schedule, a flow or a
  deduplication key (ARGV[6]). The data and every other option are copied byte for byte;
  the logs move back with the job, and so does `qo.originalData` (the data before an
  edited replay, replay_one.lua) when the job has one.

  KEYS[1]  dlq failed             KEYS[7]  queue active
  KEYS[2]  dlq meta               KEYS[8]  queue prioritized
  KEYS[3]  dlq events             KEYS[9]  queue marker
  KEYS[4]  queue wait             KEYS[10] queue pc (priority counter)
  KEYS[5]  queue paused           KEYS[11] queue events
  KEYS[6]  queue meta
  ARGV[1]  queue key base '<prefix>:<queue>:'
  ARGV[2]  dlq key base '<prefix>:<queue>-dlq:'
  ARGV[3]  now (ms)
  ARGV[4]  how many of the oldest entries to pass over (those this run already left)
  ARGV[5]  how many to take
  ARGV[6]  option keys to drop, comma separated (long and npm's short names)

  A call moves ARGV[5] jobs, each in about 15 Redis commands; bot/queues/dlq.py sizes the
  calls by measured time and sends several in one pipeline. Each call picks its ids when it
  runs, so pipelined calls (and concurrent replays) never take the same job.

  Returns a flat list: id1, outcome1, name1, id2, ... where an outcome is "replayed",
  "taken-same" / "taken-other" (the queue has a job with that id, with the same or a
  different name and data: left in the DLQ, so nothing runs twice), or "no-hash" (the DLQ
  lists the id but has no job hash: left for a person to look at).
]]
local rcall = redis.call
local srcBase, dlqBase, now = ARGV[1], ARGV[2], ARGV[3]
local skip, take = tonumber(ARGV[4]), tonumber(ARGV[5])

--- @include "replay_job"

local paused, pausedOrMaxed = queueState()
local srcMaxEvents = maxEvents(KEYS[6])
local dlqMaxEvents = maxEvents(KEYS[2])

-- The DLQ's order, oldest first: its time (the score), then the id, numeric ids as numbers
-- (2 before 14), so a replay takes what `dlq replay`'s preview lists (bot/queues/dlq.py
-- orders the same way). Entries quarantined in one bulk call share their time: when the
-- last entry read ties with others, the whole tied group is read and ordered, but only a
-- group of at most TIED_MAX (ZCOUNT first, O(log n)): past that the sorted set's own order
-- (time, then the id's bytes) stands, so a call never reads and sorts thousands of entries
-- (every call of a replay's round would pay it again, against the 10 ms bound).
local TIED_MAX = 200
local function orderKey(id)
  local digits = string.match(id, "^0*(%d+)$")
  if digits then
    return "0" .. string.format("%03d", #digits) .. digits
  end
  return "1" .. id
end
local function before(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[1] < b[1]
end

local function oldest(key, pass, want)
  local page = rcall("ZRANGE", key, 0, pass + want - 1, "WITHSCORES")
  local ids = {}
  if #page == 0 then return ids end
  local last = page[#page]
  if #page / 2 == pass + want and rcall("ZCOUNT", key, last, last) > TIED_MAX then
    for i = 2 * pass + 1, #page, 2 do ids[#ids + 1] = page[i] end
    return ids
  end
  local rows = {}
  local lastScore = tonumber(last)
  local full = #page / 2 == pass + want
  for i = 1, #page, 2 do
    local score = tonumber(page[i + 1])
    if not (full and score == lastScore) then
      rows[#rows + 1] = { page[i], score, orderKey(page[i]) }
    end
  end
  if full then
    for _, id in ipairs(rcall("ZRANGEBYSCORE", key, last, last)) do
      rows[#rows + 1] = { id, lastScore, orderKey(id) }
    end
  end
  table.sort(rows, before)
  for i = pass + 1, math.min(pass + want, #rows) do ids[#ids + 1] = rows[i][1] end
  return ids
end

local out = {}
local added = false
for _, id in ipairs(oldest(KEYS[1], skip, take)) do
  local copy = rcall("HMGET", dlqBase .. id, "name", "data", "opts", "qo.originalData")
  local outcome
  if not copy[1] then
    outcome = "no-hash"
  elseif rcall("EXISTS", srcBase .. id) == 1 then
    local there = rcall("HMGET", srcBase .. id, "name", "data")
    if there[1] == copy[1] and there[2] == copy[2] then
      outcome = "taken-same"
    else
      outcome = "taken-other"
    end
  else
    putBack(id, copy, copy[2] or "{}", paused, srcMaxEvents, dlqMaxEvents)
    added = true
    outcome = "replayed"
  end
  out[#out + 1] = id
  out[#out + 1] = outcome
  out[#out + 1] = copy[1] or ""
end
-- addBaseMarkerIfNeeded, once for the whole call: the marker is one member, set or not
if added and not pausedOrMaxed then
  rcall("ZADD", KEYS[9], 0, "0")
end
return out
