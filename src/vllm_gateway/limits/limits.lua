-- Atomic, idempotent check-and-reserve, settle and lease renewal (redis.py is its caller).
--
-- Each ARGV is one operation, its fields separated by "|":
--   A|day|now|horizon|lease expiry|tokens|marker ttl|lease ttl|member|count|month|cost
--     |month ttl|<subject>...
--     subject = prefix|daily requests|daily tokens|rpm|concurrency|daily budget|monthly
--     budget   (limits: -1 = unlimited; budgets and cost in micro-USD)
--   S|day|tokens used|refund (0/1)|member|count|month|cost used|<prefix|flags>...
--     flags = six 0/1 characters: daily requests, daily tokens, rpm, concurrency, daily
--     budget, monthly budget set
--   R|lease expiry|lease ttl|member|count|<prefix>...     (prefixes of subjects with slots)
--
-- The member is the request id. An admitted A leaves a marker, vgw:lim:m:{member} = the
-- tokens and cost it reserved ("tokens:cost"); an A that finds its marker was already admitted (the same request,
-- sent again after an uncertain call) and takes nothing more. An S applies only while the
-- marker exists, then deletes it: settling twice, or settling an A that never ran, is a
-- no-op. So every operation can be sent again safely after Redis stalled or a connection
-- dropped, which is how the caller reconciles calls whose outcome it could not see.
--
-- An A answers {code, failing subject (1-based, 0: none), then per subject: requests,
-- tokens, in window, oldest admission or "", spent today, spent this month}; code 0
-- admitted, else the limit hit by the failing subject: 1 per day, 2 tokens, 3 per minute,
-- 4 concurrency, 5 daily budget, 6 monthly budget. Nothing is reserved
-- on any subject unless every subject has room. S and R answer 0.

local function split(op)
  local out, start = {}, 1
  while true do
    local stop = string.find(op, '|', start, true)
    if not stop then
      out[#out + 1] = string.sub(op, start)
      return out
    end
    out[#out + 1] = string.sub(op, start, stop - 1)
    start = stop + 1
  end
end

local function marker(member)
  return 'vgw:lim:m:{' .. member .. '}'
end

local function settle(f)
  local day, used, refund, member = f[2], tonumber(f[3]), f[4] == '1', f[5]
  local month, cost_used = f[7], tonumber(f[8])
  local reserved = redis.call('GET', marker(member))
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
  for s = 0, tonumber(f[6]) - 1 do
    local prefix, flags = f[9 + 2 * s], f[10 + 2 * s]
    if string.sub(flags, 2, 2) == '1' and delta ~= 0 then
      redis.call('INCRBY', prefix .. 'tok:' .. day, delta)
    end
    if cost_delta ~= 0 then
      if string.sub(flags, 5, 5) == '1' then
        redis.call('INCRBY', prefix .. 'usd:' .. day, cost_delta)
      end
      if string.sub(flags, 6, 6) == '1' then
        redis.call('INCRBY', prefix .. 'usd:' .. month, cost_delta)
      end
    end
    if string.sub(flags, 4, 4) == '1' then
      redis.call('ZREM', prefix .. 'conc', member)
    end
    if refund then
      local req_key = prefix .. 'req:' .. day
      if string.sub(flags, 1, 1) == '1' and tonumber(redis.call('GET', req_key) or '0') > 0 then
        redis.call('DECR', req_key)
      end
      if string.sub(flags, 3, 3) == '1' then
        redis.call('ZREM', prefix .. 'rpm', member)
      end
    end
  end
  redis.call('DEL', marker(member))
  return 0
end

local function renew(f)
  local expiry, ttl, member = f[2], f[3], f[4]
  for s = 0, tonumber(f[5]) - 1 do
    local conc_key = f[6 + s] .. 'conc'
    if redis.call('ZADD', conc_key, 'XX', 'CH', expiry, member) == 1 then
      redis.call('EXPIRE', conc_key, ttl)
    end
  end
  return 0
end

local function acquire(f)
  local day, now, horizon, lease_expiry = f[2], f[3], f[4], f[5]
  local tokens, marker_ttl, lease_ttl, member = tonumber(f[6]), f[7], f[8], f[9]
  local count = tonumber(f[10])
  local month, cost, month_ttl = f[11], tonumber(f[12]), f[13]
  local again = redis.call('EXISTS', marker(member)) == 1
  local subjects, answer = {}, {0, 0}
  for s = 1, count do
    local base = 14 + 7 * (s - 1)
    local subject = {
      prefix = f[base],
      daily_req = tonumber(f[base + 1]),
      daily_tok = tonumber(f[base + 2]),
      rpm = tonumber(f[base + 3]),
      conc = tonumber(f[base + 4]),
      daily_usd = tonumber(f[base + 5]),
      monthly_usd = tonumber(f[base + 6]),
      requests = 0,
      tokens = 0,
      recent = 0,
      spent_day = 0,
      spent_month = 0,
    }
    local prefix = subject.prefix
    if subject.daily_req >= 0 then
      subject.requests = tonumber(redis.call('GET', prefix .. 'req:' .. day) or '0')
    end
    if subject.daily_tok >= 0 then
      subject.tokens = tonumber(redis.call('GET', prefix .. 'tok:' .. day) or '0')
    end
    if subject.rpm >= 0 then
      redis.call('ZREMRANGEBYSCORE', prefix .. 'rpm', '-inf', horizon)
      subject.recent = redis.call('ZCARD', prefix .. 'rpm')
    end
    if subject.daily_usd >= 0 then
      subject.spent_day = tonumber(redis.call('GET', prefix .. 'usd:' .. day) or '0')
    end
    if subject.monthly_usd >= 0 then
      subject.spent_month = tonumber(redis.call('GET', prefix .. 'usd:' .. month) or '0')
    end
    local in_flight = 0
    if subject.conc >= 0 then
      redis.call('ZREMRANGEBYSCORE', prefix .. 'conc', '-inf', now)
      in_flight = redis.call('ZCARD', prefix .. 'conc')
    end
    local code = 0
    if again then code = 0
    elseif subject.monthly_usd >= 0 and subject.spent_month + cost > subject.monthly_usd then
      code = 6
    elseif subject.daily_req >= 0 and subject.requests >= subject.daily_req then code = 1
    elseif subject.daily_usd >= 0 and subject.spent_day + cost > subject.daily_usd then code = 5
    elseif subject.daily_tok >= 0 and subject.tokens + tokens > subject.daily_tok then code = 2
    elseif subject.rpm >= 0 and subject.recent >= subject.rpm then code = 3
    elseif subject.conc >= 0 and in_flight >= subject.conc then code = 4
    end
    if code ~= 0 and answer[1] == 0 then
      answer[1], answer[2] = code, s
    end
    subjects[s] = subject
  end
  local reserve = answer[1] == 0 and not again
  if reserve then
    redis.call('SET', marker(member), tokens .. ':' .. cost, 'EX', marker_ttl)
  end
  for s = 1, count do
    local subject = subjects[s]
    local prefix = subject.prefix
    if reserve then
      if subject.daily_req >= 0 then
        subject.requests = redis.call('INCR', prefix .. 'req:' .. day)
        redis.call('EXPIRE', prefix .. 'req:' .. day, marker_ttl)
      end
      if subject.daily_tok >= 0 then
        subject.tokens = redis.call('INCRBY', prefix .. 'tok:' .. day, tokens)
        redis.call('EXPIRE', prefix .. 'tok:' .. day, marker_ttl)
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
        subject.spent_day = redis.call('INCRBY', prefix .. 'usd:' .. day, cost)
        redis.call('EXPIRE', prefix .. 'usd:' .. day, marker_ttl)
      end
      if subject.monthly_usd >= 0 then
        subject.spent_month = redis.call('INCRBY', prefix .. 'usd:' .. month, cost)
        redis.call('EXPIRE', prefix .. 'usd:' .. month, month_ttl)
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
for i = 1, #ARGV do
  local f = split(ARGV[i])
  local kind = f[1]
  if kind == 'S' then
    results[i] = settle(f)
  elseif kind == 'R' then
    results[i] = renew(f)
  else
    results[i] = acquire(f)
  end
end
return results
