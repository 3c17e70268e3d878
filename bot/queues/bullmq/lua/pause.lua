--[[
  pause: pause or resume a queue exactly as npm bullmq 5 lays it out, one bounded step a call.

  Why not PyPI bullmq's pause: PyPI bullmq 3.4 pauses the bullmq 6 way (jobs stay in `wait`,
  only meta.paused is set). npm bullmq 5, the reference, moves them into the `paused` list,
  and its resume RENAMEs `paused` over `wait`: after a 6-style pause, a resume from Node 5
  (Bull Board, the app) would drop every job that sat in `wait` from its list. So we pause
  the Node 5 way, and merge instead of overwrite when both lists exist.

  Why steps: the usual case is one RENAME (O(1)), as npm does. But when both lists hold
  jobs (a queue left half-merged, jobs a PyPI bullmq write put into `wait` of a paused
  queue), they must be merged, and merging a million jobs in one call would hold Redis for
  hundreds of ms. So each call moves at most ARGV[2] jobs (LRANGE + RPUSH + LTRIM, ~2 ms
  for 4,000, ~1.1 ms for 2,000 measured) and returns how many are left; the caller calls the "settle" mode
  until 0. Each step is atomic, so a crash between calls leaves every job in `wait` or in
  `paused`, never in neither; the next pause, resume or settle finishes the merge.

  Modes (ARGV[1]):
    "pause"          set meta.paused, drop the marker (workers stop), event; then one step
                     of wait -> paused
    "settle-paused"  if the queue is (still) paused: one step of wait -> paused
    "resume"         clear meta.paused, event; one step of paused -> wait; the marker
    "settle-resumed" if the queue is (still) not paused: one step of paused -> wait; marker
  A settle mode stops (returns 0) when someone paused or resumed the queue in between: the
  newer pause or resume does its own merge.

  Order: the jobs a queue held before the pause or resume run first. Pausing appends `wait`
  at the tail of `paused` (the end that runs first: the older jobs); resuming appends
  `paused` at the tail of `wait`, as PyPI bullmq's resume does.

  KEYS[1] wait  KEYS[2] paused  KEYS[3] meta  KEYS[4] marker  KEYS[5] events
  KEYS[6] prioritized  KEYS[7] delayed
  ARGV[1] mode  ARGV[2] at most this many jobs moved by one call

  Returns how many jobs are still to move (0: done).
]]
local rcall = redis.call
local waitKey, pausedKey, metaKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, chunk = ARGV[1], tonumber(ARGV[2])

-- Move `from` to the tail of `to`: a RENAME when `to` is empty, else one chunk.
local function step(from, to)
  if rcall("EXISTS", from) == 0 then return 0 end
  if rcall("EXISTS", to) == 0 then
    rcall("RENAME", from, to)
    return 0
  end
  local jobs = rcall("LRANGE", from, 0, chunk - 1)
  rcall("RPUSH", to, unpack(jobs))
  rcall("LTRIM", from, #jobs, -1)
  return rcall("LLEN", from)
end

-- npm bullmq 5's marker after a resume: workers wake for waiting or prioritized jobs, or
-- at the next delayed job's time (addDelayMarkerIfNeeded).
local function mark()
  if rcall("LLEN", waitKey) + rcall("ZCARD", KEYS[6]) > 0 then
    rcall("ZADD", markerKey, 0, "0")
    return
  end
  local nextDelayed = rcall("ZRANGE", KEYS[7], 0, 0, "WITHSCORES")
  if nextDelayed[2] then rcall("ZADD", markerKey, tonumber(nextDelayed[2]) / 0x1000, "1") end
end

local function event(name)
  local maxEvents = tonumber(rcall("HGET", metaKey, "opts.maxLenEvents")) or 10000
  rcall("XADD", KEYS[5], "MAXLEN", "~", maxEvents, "*", "event", name)
end

local paused = rcall("HEXISTS", metaKey, "paused") == 1
if mode == "pause" then
  rcall("HSET", metaKey, "paused", 1)
  rcall("DEL", markerKey)
  event("paused")
  return step(waitKey, pausedKey)
elseif mode == "settle-paused" then
  if not paused then return 0 end
  return step(waitKey, pausedKey)
elseif mode == "resume" then
  rcall("HDEL", metaKey, "paused")
  event("resumed")
  local left = step(pausedKey, waitKey)
  mark()
  return left
elseif mode == "settle-resumed" then
  if paused then return 0 end
  local left = step(pausedKey, waitKey)
  mark()
  return left
end
return redis.error_reply("pause.lua: unknown mode " .. tostring(mode))
