--[[
  dlq_release: the last step of a replay; the job is back in its queue, drop the DLQ copy.

  Replay is an ordered, idempotent sequence: (1) read the DLQ job, (2) add it back to the
  queue with its original id through PyPI bullmq's add (a no-op if that id is there already),
  (3) this script. A crash between (2) and (3) leaves the job in both places, and running the
  replay again finishes the job. This step is a script so the logs move back and the copy goes
  in one atomic step.

  If the queue was paused meanwhile, the job PyPI bullmq put into `wait` goes to `paused`,
  where npm bullmq 5 keeps a paused queue's jobs (see pause.lua).

  KEYS[1]  dlq failed
  KEYS[2]  source wait
  KEYS[3]  source paused
  KEYS[4]  source meta
  ARGV[1]  source key base '<prefix>:<queue>:'
  ARGV[2]  dlq key base '<prefix>:<queue>-dlq:'
  ARGV[3]  job id

  Returns 1 if the copy was dropped, 0 if it was already gone.
]]
local rcall = redis.call
local id = ARGV[3]
local srcKey = ARGV[1] .. id
local dlqKey = ARGV[2] .. id
if rcall("EXISTS", dlqKey) == 0 and not rcall("ZSCORE", KEYS[1], id) then
  return 0
end
if rcall("EXISTS", dlqKey .. ":logs") == 1 and rcall("EXISTS", srcKey .. ":logs") == 0 then
  rcall("RENAME", dlqKey .. ":logs", srcKey .. ":logs")
end
if rcall("HEXISTS", KEYS[4], "paused") == 1 and rcall("LREM", KEYS[2], 0, id) > 0 then
  rcall("LPUSH", KEYS[3], id)
end
rcall("ZREM", KEYS[1], id)
rcall("DEL", dlqKey, dlqKey .. ":logs", dlqKey .. ":dependencies", dlqKey .. ":processed",
  dlqKey .. ":failed", dlqKey .. ":unsuccessful")
return 1
