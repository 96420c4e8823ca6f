-- Atomic, idempotent check-and-reserve, settle and lease renewal (redis.py is its caller).
--
-- Each ARGV is one operation, a JSON array (decoded by Redis's cjson, in C: splitting a
-- "|"-separated string in Lua cost more than all of an acquire's Redis commands together):
--   ["A", day, now, horizon, lease expiry, tokens, marker ttl, lease ttl, member, month,
--    cost, month ttl, [subject, ...]]
--   ["S", day, tokens used, refund (true/false), member, month, cost used, [subject, ...]]
--     subject = [prefix, daily requests, daily tokens, rpm, concurrency, daily budget,
--     monthly budget]   (limits: -1 = unlimited; budgets and cost in micro-USD)
--   ["R", lease expiry, lease ttl, member, [prefix, ...]]   (subjects with slots)
-- Times are epoch seconds; a number given to a Redis command is written with 17 digits,
-- so scores are the gateway's doubles exactly.
--
-- The member is the request id. An admitted A leaves a marker, vgw:lim:m:{member} = the
-- tokens and cost it reserved ("tokens:cost"); an A that finds its marker was already
-- admitted (the same request, sent again after an uncertain call) and takes nothing more.
-- An S applies only while the marker exists, then deletes it: settling twice, or settling
-- an A that never ran, is a no-op. So every operation can be sent again safely after Redis
-- stalled or a connection dropped, which is how the caller reconciles calls whose outcome
-- it could not see.
--
-- An A answers {code, failing subject (1-based, 0: none), then per subject: requests,
-- tokens, in window, oldest admission or "", spent today, spent this month}; code 0
-- admitted, else the limit hit by the failing subject: 1 per day, 2 tokens, 3 per minute,
-- 4 concurrency, 5 daily budget, 6 monthly budget. Nothing is reserved
-- on any subject unless every subject has room. S and R answer 0.
--
-- A daily or monthly counter is given its expiry when an increment creates it (the
-- increment then returns the amount added), not at every increment: its name holds its
-- period, so the first expiry is the right one. The sorted sets' expiry moves with each
-- admission, since their members are the last minute's or the running requests.

local function marker(member)
  return 'vgw:lim:m:{' .. member .. '}'
end

-- Add `amount` to a period's counter; the counter's new value.
local function add(key, amount, ttl)
  local value = redis.call('INCRBY', key, amount)
  if value == amount then
    redis.call('EXPIRE', key, ttl)
  end
  return value
end

local function counter(key)
  return tonumber(redis.call('GET', key) or '0')
end

local function settle(f)
  local day, used, refund, member, month, cost_used = f[2], f[3], f[4], f[5], f[6], f[7]
  local mark = marker(member)
  local reserved = redis.call('GET', mark)
  if not reserved then
    return 0
  end
  local colon = string.find(reserved, ':', 1, true)
  local reserved_cost = 0
  if colon then
    reserved_cost = tonumber(string.sub(reserved, colon + 1))
    reserved = string.sub(reserved, 1, colon - 1)
  end
  local delta = used - tonumber(reserved)
  local cost_delta = cost_used - reserved_cost
  for _, subject in ipairs(f[8]) do
    local prefix = subject[1]
    if delta ~= 0 and subject[3] >= 0 then
      redis.call('INCRBY', prefix .. 'tok:' .. day, delta)
    end
    if cost_delta ~= 0 then
      if subject[6] >= 0 then
        redis.call('INCRBY', prefix .. 'usd:' .. day, cost_delta)
      end
      if subject[7] >= 0 then
        redis.call('INCRBY', prefix .. 'usd:' .. month, cost_delta)
      end
    end
    if subject[5] >= 0 then
      redis.call('ZREM', prefix .. 'conc', member)
    end
    if refund then
      local req_key = prefix .. 'req:' .. day
      if subject[2] >= 0 and counter(req_key) > 0 then
        redis.call('DECR', req_key)
      end
      if subject[4] >= 0 then
        redis.call('ZREM', prefix .. 'rpm', member)
      end
    end
  end
  redis.call('DEL', mark)
  return 0
end

local function renew(f)
  local expiry, ttl, member = f[2], f[3], f[4]
  for _, prefix in ipairs(f[5]) do
    local conc_key = prefix .. 'conc'
    if redis.call('ZADD', conc_key, 'XX', 'CH', expiry, member) == 1 then
      redis.call('EXPIRE', conc_key, ttl)
    end
  end
  return 0
end

-- The first limit of a subject this request would exceed (0: none), as acquire() answers.
local function limit_hit(subject, tokens, cost)
  if subject.monthly_usd >= 0 and subject.spent_month + cost > subject.monthly_usd then
    return 6
  elseif subject.daily_req >= 0 and subject.requests >= subject.daily_req then
    return 1
  elseif subject.daily_usd >= 0 and subject.spent_day + cost > subject.daily_usd then
    return 5
  elseif subject.daily_tok >= 0 and subject.tokens + tokens > subject.daily_tok then
    return 2
  elseif subject.rpm >= 0 and subject.recent >= subject.rpm then
    return 3
  elseif subject.conc >= 0 and subject.in_flight >= subject.conc then
    return 4
  end
  return 0
end

local function acquire(f)
  local day, now, horizon, lease_expiry = f[2], f[3], f[4], f[5]
  local tokens, marker_ttl, lease_ttl, member = f[6], f[7], f[8], f[9]
  local month, cost, month_ttl = f[10], f[11], f[12]
  local mark = marker(member)
  -- Taken first: a request sent again finds it and takes nothing more; given back below
  -- when a limit refuses the request.
  local again = not redis.call('SET', mark, tokens .. ':' .. cost, 'NX', 'EX', marker_ttl)
  local subjects, answer = {}, {0, 0}
  for s, given in ipairs(f[13]) do
    local prefix = given[1]
    local subject = {
      prefix = prefix,
      daily_req = given[2],
      daily_tok = given[3],
      rpm = given[4],
      conc = given[5],
      daily_usd = given[6],
      monthly_usd = given[7],
      requests = 0, tokens = 0, recent = 0, in_flight = 0, spent_day = 0, spent_month = 0,
    }
    if subject.daily_req >= 0 then
      subject.requests = counter(prefix .. 'req:' .. day)
    end
    if subject.daily_tok >= 0 then
      subject.tokens = counter(prefix .. 'tok:' .. day)
    end
    if subject.rpm >= 0 then
      redis.call('ZREMRANGEBYSCORE', prefix .. 'rpm', '-inf', horizon)
      subject.recent = redis.call('ZCARD', prefix .. 'rpm')
    end
    if subject.daily_usd >= 0 then
      subject.spent_day = counter(prefix .. 'usd:' .. day)
    end
    if subject.monthly_usd >= 0 then
      subject.spent_month = counter(prefix .. 'usd:' .. month)
    end
    if subject.conc >= 0 then
      redis.call('ZREMRANGEBYSCORE', prefix .. 'conc', '-inf', now)
      subject.in_flight = redis.call('ZCARD', prefix .. 'conc')
    end
    if not again and answer[1] == 0 then
      local code = limit_hit(subject, tokens, cost)
      if code ~= 0 then
        answer[1], answer[2] = code, s
      end
    end
    subjects[s] = subject
  end
  local reserve = answer[1] == 0 and not again
  if answer[1] ~= 0 then
    redis.call('DEL', mark)
  end
  for _, subject in ipairs(subjects) do
    local prefix = subject.prefix
    if reserve then
      if subject.daily_req >= 0 then
        subject.requests = add(prefix .. 'req:' .. day, 1, marker_ttl)
      end
      if subject.daily_tok >= 0 then
        subject.tokens = add(prefix .. 'tok:' .. day, tokens, marker_ttl)
      end
      if subject.rpm >= 0 then
        redis.call('ZADD', prefix .. 'rpm', now, member)
        subject.recent = subject.recent + 1
        redis.call('EXPIRE', prefix .. 'rpm', 61)
      end
      if subject.conc >= 0 then
        redis.call('ZADD', prefix .. 'conc', lease_expiry, member)
        redis.call('EXPIRE', prefix .. 'conc', lease_ttl)
      end
      if subject.daily_usd >= 0 then
        subject.spent_day = add(prefix .. 'usd:' .. day, cost, marker_ttl)
      end
      if subject.monthly_usd >= 0 then
        subject.spent_month = add(prefix .. 'usd:' .. month, cost, month_ttl)
      end
    end
    local oldest = ''
    if subject.rpm >= 0 and subject.recent > 0 then
      oldest = redis.call('ZRANGE', prefix .. 'rpm', 0, 0, 'WITHSCORES')[2]
    end
    answer[#answer + 1] = subject.requests
    answer[#answer + 1] = subject.tokens
    answer[#answer + 1] = subject.recent
    answer[#answer + 1] = oldest
    answer[#answer + 1] = subject.spent_day
    answer[#answer + 1] = subject.spent_month
  end
  return answer
end

local results = {}
for n = 1, #ARGV do
  local f = cjson.decode(ARGV[n])
  local kind = f[1]
  if kind == 'A' then
    results[n] = acquire(f)
  elseif kind == 'S' then
    results[n] = settle(f)
  elseif kind == 'R' then
    results[n] = renew(f)
  else
    return redis.error_reply('unknown limiter operation ' .. tostring(kind))
  end
end
return results
