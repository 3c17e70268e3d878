--[[
  replay_one: move ONE job, named by its id, from a DLQ back into its queue, with its data
  edited or as it is, atomically (`dlq replay QUEUE ID [--set a.b=V] [--patch JSON]`).

  Why a script of our own: neither PyPI nor npm bullmq can move a job from another queue,
  let alone with new data (see replay.lua for why add-then-delete runs jobs twice). Here
  the check (the id is still in the DLQ, its data is still what the edit was computed
  from, the queue has no job with that id), the write into the queue and the removal of
  the DLQ copy are one script: a crash leaves the job wholly in the DLQ or wholly in its
  queue, and of two concurrent replays of the same id exactly one moves it (the other
  finds it gone: "not-in-dlq").

  The job is laid out as replay.lua lays it out (npm bullmq 5's addStandardJob /
  addPrioritizedJob for a new job with a custom id): the hash (name, data, opts, timestamp,
  delay 0, priority), `wait` / `paused` (LPUSH, RPUSH for lifo) or `prioritized`, the
  marker, the "added" and "waiting" events, the logs moved back. With an edit (ARGV[8] =
  "1") the data is ARGV[7] and the data it replaces is kept on the job's hash as
  `qo.originalData` (npm bullmq ignores hash fields it does not know: a Worker processes
  the job as any other), with `qo.editedBy` / `qo.editedAt`. A job edited before, then
  quarantined again, keeps its first original: the DLQ copy's `qo.originalData` wins.

  KEYS: as replay.lua (1 dlq failed, 2 dlq meta, 3 dlq events, 4 wait, 5 paused, 6 meta,
        7 active, 8 prioritized, 9 marker, 10 pc, 11 events)
  ARGV[1]  queue key base '<prefix>:<queue>:'     ARGV[6]  option keys to drop, comma separated
  ARGV[2]  dlq key base '<prefix>:<queue>-dlq:'   ARGV[7]  the new data (with ARGV[8] = "1")
  ARGV[3]  now (ms)                               ARGV[8]  "1": edited, "0": data as it is
  ARGV[4]  the job id                             ARGV[9]  who edits (qo.editedBy)
  ARGV[5]  the data the edit was computed from (compared byte for byte; with ARGV[8] = "1")

  Returns { outcome, name }: outcome "replayed", "not-in-dlq", "no-hash", "changed" (the
  DLQ copy's data is no longer ARGV[5]), "taken-same" / "taken-other" (as replay.lua).
  About 15 Redis commands: far inside the 10 ms bound.
]]
local rcall = redis.call
local srcBase, dlqBase, now, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local edited = ARGV[8] == "1"

--- @include "replay_job"

if not rcall("ZSCORE", KEYS[1], id) then
  return { "not-in-dlq", "" }
end
local srcKey = srcBase .. id
local copy = rcall("HMGET", dlqBase .. id, "name", "data", "opts", "qo.originalData")
if not copy[1] then
  return { "no-hash", "" }
end
if edited and (copy[2] or "{}") ~= ARGV[5] then
  return { "changed", copy[1] }
end
if rcall("EXISTS", srcKey) == 1 then
  local there = rcall("HMGET", srcKey, "name", "data")
  if there[1] == copy[1] and there[2] == copy[2] then
    return { "taken-same", copy[1] }
  end
  return { "taken-other", copy[1] }
end

local paused, pausedOrMaxed = queueState()
local data = copy[2] or "{}"
if edited then
  data = ARGV[7]
end
putBack(id, copy, data, paused, maxEvents(KEYS[6]), maxEvents(KEYS[2]))
if edited then
  -- the data it replaces is kept (a job edited before keeps its first original)
  rcall("HSET", srcKey, "qo.originalData", copy[4] or copy[2] or "{}",
    "qo.editedBy", ARGV[9], "qo.editedAt", now)
end
-- addBaseMarkerIfNeeded
if not pausedOrMaxed then
  rcall("ZADD", KEYS[9], 0, "0")
end
return { "replayed", copy[1] }
