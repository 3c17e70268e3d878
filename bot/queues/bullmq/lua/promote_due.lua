--[[
  promote_due: move a queue's delayed jobs whose time has come to wait (or prioritized), as
  npm bullmq 5's promoteDelayedJobs does inside a Worker's moveToActive.

  Why by hand: in cron mode no Worker runs between drains, and a drain endpoint that checks
  for work the cheap way (getJobCounts of waiting and prioritized: counting all delayed jobs
  would count future ones, and it would never go idle) starts no Worker for a queue whose
  only work is a due delayed job, so that job would wait for some other job to come along.
  Neither npm nor PyPI bullmq has a "promote the due ones" call (Queue.promoteJobs promotes
  every delayed job, due or not). Each call moves at most ARGV[3] jobs, so it stays short;
  the caller calls again while it returns a full batch.

  KEYS[1] delayed  KEYS[2] wait  KEYS[3] paused  KEYS[4] prioritized  KEYS[5] meta
  KEYS[6] events   KEYS[7] pc (priority counter)  KEYS[8] marker
  ARGV[1] key base '<prefix>:<queue>:'  ARGV[2] now (ms)  ARGV[3] at most this many jobs
  Returns how many jobs it moved.
]]
local rcall = redis.call
local jobs = rcall("ZRANGEBYSCORE", KEYS[1], 0, (tonumber(ARGV[2]) + 1) * 0x1000 - 1,
  "LIMIT", 0, tonumber(ARGV[3]))
if #jobs == 0 then
  return 0
end
local paused = rcall("HEXISTS", KEYS[5], "paused") == 1
local target = paused and KEYS[3] or KEYS[2]
rcall("ZREM", KEYS[1], unpack(jobs))
for _, jobId in ipairs(jobs) do
  local jobKey = ARGV[1] .. jobId
  local priority = tonumber(rcall("HGET", jobKey, "priority")) or 0
  if priority == 0 then
    rcall("LPUSH", target, jobId)
  else
    local counter = rcall("INCR", KEYS[7])
    rcall("ZADD", KEYS[4], priority * 0x100000000 + counter % 0x100000000, jobId)
  end
  rcall("XADD", KEYS[6], "*", "event", "waiting", "jobId", jobId, "prev", "delayed")
  rcall("HSET", jobKey, "delay", 0)
end
if not paused then
  rcall("ZADD", KEYS[8], 0, "0")
end
return #jobs
