--[[
  pause: pause a queue exactly as npm bullmq 5 lays it out, or settle a paused queue.

  Why not PyPI bullmq's pause: PyPI bullmq 3.4 pauses the bullmq 6 way (jobs stay in `wait`,
  only meta.paused is set). npm bullmq 5, the reference, moves them into the `paused` list,
  and its resume RENAMEs `paused` over `wait`: after a 6-style pause, a resume from Node 5
  (Bull Board, the app) would drop every job that sat in `wait` from its list. So we pause
  the Node 5 way, and merge instead of overwrite when both lists exist.

  "settle" does only the merge, and only when the queue is paused: it is run after a PyPI
  bullmq write (retry, replay) that may have put jobs into `wait` of a paused queue.

  KEYS[1] wait  KEYS[2] paused  KEYS[3] meta  KEYS[4] marker  KEYS[5] events
  ARGV[1] "pause" or "settle"

  Returns how many jobs moved from wait to paused.
]]
local rcall = redis.call
if ARGV[1] == "settle" and rcall("HEXISTS", KEYS[3], "paused") == 0 then
  return 0
end
local moved = rcall("LLEN", KEYS[1])
if moved > 0 then
  if rcall("EXISTS", KEYS[2]) == 0 then
    rcall("RENAME", KEYS[1], KEYS[2])
  else
    -- wait holds the older jobs: append them at the tail of paused, the end that runs first.
    while rcall("LLEN", KEYS[1]) > 0 do
      local jobs = rcall("LRANGE", KEYS[1], 0, 999)
      rcall("RPUSH", KEYS[2], unpack(jobs))
      rcall("LTRIM", KEYS[1], #jobs, -1)
    end
  end
end
if ARGV[1] == "pause" then
  rcall("HSET", KEYS[3], "paused", 1)
  rcall("DEL", KEYS[4])
  local maxEvents = tonumber(rcall("HGET", KEYS[3], "opts.maxLenEvents")) or 10000
  rcall("XADD", KEYS[5], "MAXLEN", "~", maxEvents, "*", "event", "paused")
end
return moved
