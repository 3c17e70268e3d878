--[[
  failed_page: ids, failedReasons and scores of a page of the failed set, oldest first.

  Bulk quarantine matches failedReason against a user's regex, which Lua cannot do; this
  hands the client one bounded page at a time (BullMQ's getJobs would cost a round trip per
  job to read the reasons).

  Pages follow a cursor, not an index: the page starts right after the anchor, the last job
  of the previous page. An index shifts whenever anyone removes a job in front of it (a
  second bulk quarantine running at the same time, a worker's removeOnFail), and the jobs
  that slide back past the index would never be read. If the anchor itself is gone, the
  page starts at the first job whose score (finish time) is not below the anchor's: at
  worst a few jobs of that same millisecond are read again, which is harmless.

  KEYS[1]  '<prefix>:<queue>:failed'
  ARGV[1]  key base '<prefix>:<queue>:'
  ARGV[2]  anchor job id ("" for the oldest end)
  ARGV[3]  the anchor's score
  ARGV[4]  page size
  ARGV[5]  bytes of each reason to return (enough for the characters the client matches;
           cut back to a whole UTF-8 character)
  ARGV[6]  bytes of reasons after which the page ends early

  Returns three JSON arrays, ids, reasons ("" for a job with no reason) and scores, or an
  empty list past the end (a short page is not the end: the next starts after its last
  job): a reply element per field of a 1,000-job page cost the client more to parse than
  the page cost Redis. Each call stays short however long the reasons are: at most ARGV[4]
  jobs and, past ARGV[6] bytes of reasons, no more (a reason can be megabytes).
]]
local rcall = redis.call
local start = 0
if ARGV[2] ~= "" then
  local rank = rcall("ZRANK", KEYS[1], ARGV[2])
  if rank then
    start = rank + 1
  else
    start = rcall("ZCOUNT", KEYS[1], "-inf", "(" .. ARGV[3])
  end
end
local page = rcall("ZRANGE", KEYS[1], start, start + tonumber(ARGV[4]) - 1, "WITHSCORES")
if #page == 0 then
  return {}
end
local reasonBytes, pageBytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local ids, reasons, scores = {}, {}, {}
local bytes = 0
for i = 1, #page, 2 do
  local id = page[i]
  local reason = rcall("HGET", ARGV[1] .. id, "failedReason") or ""
  if #reason > reasonBytes then
    local cut = reasonBytes
    local following = string.byte(reason, cut + 1)
    while cut > 0 and following >= 128 and following < 192 do -- inside a UTF-8 character
      following = string.byte(reason, cut)
      cut = cut - 1
    end
    reason = string.sub(reason, 1, cut)
  end
  ids[#ids + 1] = id
  reasons[#reasons + 1] = reason
  scores[#scores + 1] = page[i + 1]
  bytes = bytes + #reason
  if bytes >= pageBytes then
    break
  end
end
return { cjson.encode(ids), cjson.encode(reasons), cjson.encode(scores) }
