--[[
  quarantine_failed: move failed jobs of a queue into its DLQ, each job atomically; the
  bulk path of `quarantine --failed-matching` (lua/quarantine.lua moves one job of any state).

  Why a script of its own: a bulk move only ever takes failed jobs, so it needs none of the
  state search (LPOS over lists) a single job needs, and it can move the hash instead of
  copying it: RENAME keeps every field (id, name, data, opts, atm, failedReason, stacktrace,
  timestamps) in O(1), where HGETALL + HSET + DEL copied each field through Lua. The DLQ copy
  is the same as lua/quarantine.lua writes: in the DLQ's `failed` set, failedReason
  "quarantined: <reason> (by <actor>)", the original failedReason and finishedOn under
  qo.failedReason / qo.finishedOn, with qo.by, qo.at, qo.reason, qo.from, qo.queue; its logs
  and flow keys move with it. A crash leaves each job wholly in the queue or in the DLQ.

  Three ways to name the jobs (ARGV[7]):
    "ids"     ARGV[8] is a JSON array of the job ids the client matched against the user's
              pattern (one argument: a thousand separate ones cost the client more to encode
              than the JSON costs Redis to decode); an id no longer in `failed` (another run
              took it, a retry, removeOnFail) is "missing".
    "oldest"  ARGV[8] = how many of the oldest failed jobs to pass over (those this run
              could not move), ARGV[9] = how many to take after them: a pattern that matches
              every reason needs no reading of reasons, and each call sees what the calls
              before it (this run's or a concurrent run's) left, so pipelined calls and
              concurrent runs share the set without overlap.
    "literal" the user's pattern is plain text (no regex syntax): ARGV[8] = that text,
              ARGV[9] = how many of the failed jobs to look at, ARGV[10] = how many this
              run may move in all (its --limit), ARGV[11] = how many characters of a
              reason are matched (the client's MATCH_CHARS); KEYS[7] = the run's own hash
              (skip: how many of the oldest it passed over, moved: how many it moved), so
              each call, pipelined or not, continues where the one before it stopped.

  KEYS[1]  source failed          KEYS[4]  dlq failed
  KEYS[2]  source meta            KEYS[5]  dlq meta
  KEYS[3]  source events          KEYS[6]  dlq events
  KEYS[7]  ("literal" only) the run's place, '<prefix>:<queue>:qo-bulk:<run id>'
  ARGV[1]  source key base '<prefix>:<queue>:'
  ARGV[2]  dlq key base '<prefix>:<queue>-dlq:'
  ARGV[3]  now (ms)
  ARGV[4]  operator's reason
  ARGV[5]  actor
  ARGV[6]  source queue name

  Returns { looked at, moved ids as a JSON array, microseconds this call took (by Redis's
  clock: the client sizes its calls by it, as the time it sees includes its own and other
  calls' turns), how many did not match ("literal"; else 0), id1, outcome1, ... } with
  a pair for each job not moved, the outcome "missing", "dlq-has:<id>" or "flow:<parentKey>"
  (the codes of lua/quarantine.lua), or "no-hash" (`failed` lists the id but no job hash
  exists: left for a person to look at). The moved ids come as one string: a reply of one
  element per job costs the client more to parse than the move costs Redis.
]]
local rcall = redis.call
local started = rcall("TIME")
local srcBase, dlqBase = ARGV[1], ARGV[2]
local now, reason, actor, queueName = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local quarantinedReason = "quarantined: " .. reason .. " (by " .. actor .. ")"

local ids
local mode = ARGV[7]
local checkFailed = mode == "ids"
-- "literal": the pattern is plain text, matched here in the same HMGET that reads the job
-- for its move (the client would read every reason once more, in pages, only to match it).
-- The run's place (how many of the oldest it passed over, how many it moved) is kept in
-- Redis, so calls can be pipelined: each continues exactly where the one before it
-- stopped. Non-matching jobs stay at the oldest end and are passed over.
local literal, runKey, room, matchChars, skip
if checkFailed then
  ids = cjson.decode(ARGV[8])
elseif mode == "literal" then
  runKey, literal = KEYS[7], ARGV[8]
  local take, limit = tonumber(ARGV[9]), tonumber(ARGV[10])
  matchChars = tonumber(ARGV[11])
  local state = rcall("HMGET", runKey, "skip", "moved")
  skip = tonumber(state[1] or "0")
  room = limit - tonumber(state[2] or "0")
  ids = {}
  if room > 0 then
    ids = rcall("ZRANGE", KEYS[1], skip, skip + take - 1)
  end
else
  local take
  skip, take = tonumber(ARGV[8]), tonumber(ARGV[9])
  ids = rcall("ZRANGE", KEYS[1], skip, skip + take - 1)
end

-- Whether `text` holds `literal` within its first matchChars characters, as the client's
-- RE2 search over text[:MATCH_CHARS] would say (bytes are counted as characters only
-- when a hit lies past matchChars bytes: continuation bytes 0x80-0xBF start none).
local function holds(text)
  if not text then
    return false
  end
  local at = string.find(text, literal, 1, true)
  if not at then
    return false
  end
  local stop = at + #literal - 1
  if stop <= matchChars then
    return true
  end
  local _, chars = string.gsub(string.sub(text, 1, stop), "[^\128-\191]", "")
  return chars <= matchChars
end

local srcMaxEvents = tonumber(rcall("HGET", KEYS[2], "opts.maxLenEvents")) or 10000
local dlqMaxEvents = tonumber(rcall("HGET", KEYS[5], "opts.maxLenEvents")) or 10000

local SUBKEYS = { ":logs", ":dependencies", ":processed", ":failed", ":unsuccessful" }

local moved = {}
local others = {}
local looked, nomatch = 0, 0
for _, id in ipairs(ids) do
  if room and #moved >= room then
    break -- the run's limit is reached: what is left is not looked at
  end
  looked = looked + 1
  local jobKey = srcBase .. id
  local dlqKey = dlqBase .. id
  local outcome
  if checkFailed and not rcall("ZSCORE", KEYS[1], id) then
    outcome = "missing"
  else
    local old = rcall("HMGET", jobKey, "failedReason", "finishedOn", "deid", "parentKey",
      "name")
    if not old[5] then
      outcome = "no-hash" -- every job hash has a name; HMGET of a missing key is all nil
    elseif literal and not holds(old[1]) then
      outcome = "nomatch"
    elseif old[4] then
      outcome = "flow:" .. old[4]
    elseif rcall("RENAMENX", jobKey, dlqKey) == 0 then
      -- checks and moves in one command: the DLQ already has a job with this id
      outcome = "dlq-has:" .. id
    else
      -- 1. the job, with every field, became the DLQ copy (RENAMENX); our fields on top
      rcall("HSET", dlqKey,
        "failedReason", quarantinedReason, "finishedOn", now,
        "qo.by", actor, "qo.at", now, "qo.reason", reason,
        "qo.from", "failed", "qo.queue", queueName,
        "qo.failedReason", old[1] or "", "qo.finishedOn", old[2] or "")
      if rcall("EXISTS", jobKey .. SUBKEYS[1], jobKey .. SUBKEYS[2], jobKey .. SUBKEYS[3],
          jobKey .. SUBKEYS[4], jobKey .. SUBKEYS[5]) > 0 then
        for _, suffix in ipairs(SUBKEYS) do
          if rcall("EXISTS", jobKey .. suffix) == 1 then
            rcall("RENAME", jobKey .. suffix, dlqKey .. suffix)
          end
        end
      end
      -- 2. (the failed set and the DLQ's: once for the whole call, below) the
      -- deduplication key goes if it still points at this job
      if old[3] then
        local dedupKey = srcBase .. "de:" .. old[3]
        if rcall("GET", dedupKey) == id then
          rcall("DEL", dedupKey, srcBase .. "dn:" .. old[3])
        end
      end
      -- 3. events, so QueueEvents listeners and Bull Board see what happened
      rcall("XADD", KEYS[3], "MAXLEN", "~", srcMaxEvents, "*",
        "event", "removed", "jobId", id, "prev", "failed")
      rcall("XADD", KEYS[6], "MAXLEN", "~", dlqMaxEvents, "*",
        "event", "failed", "jobId", id, "failedReason", quarantinedReason, "prev", "failed")
      outcome = "moved"
    end
  end
  if outcome == "moved" then
    moved[#moved + 1] = id
  elseif outcome == "nomatch" then
    nomatch = nomatch + 1
  else
    others[#others + 1] = id
    others[#others + 1] = outcome
  end
end
local movedJson = "[]"
if #moved > 0 then
  movedJson = cjson.encode(moved)
  -- in chunks: Lua's unpack has a stack limit
  for first = 1, #moved, 1000 do
    local chunk = { unpack(moved, first, math.min(first + 999, #moved)) }
    rcall("ZREM", KEYS[1], unpack(chunk))
    local scored = {}
    for _, id in ipairs(chunk) do
      scored[#scored + 1] = now
      scored[#scored + 1] = id
    end
    rcall("ZADD", KEYS[4], unpack(scored))
  end
end
if runKey then
  local state = rcall("HMGET", runKey, "moved")
  rcall("HSET", runKey, "skip", skip + looked - #moved,
    "moved", tonumber(state[1] or "0") + #moved)
  rcall("PEXPIRE", runKey, 3600000)
end
local finished = rcall("TIME")
local tookUs = (finished[1] - started[1]) * 1000000 + (finished[2] - started[2])
return { looked, movedJson, tookUs, nomatch, unpack(others) }
