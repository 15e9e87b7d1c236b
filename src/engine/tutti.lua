#!lua name=tutti
-- tutti's Redis functions. Loaded by every tutti node at start with
-- FUNCTION LOAD REPLACE; workers in any language publish with
--   FCALL tutti_publish 2 tutti:{CHANNEL}:m tutti:{CHANNEL}:s CHANNEL EVENT DATA MAXLEN TTL_MS META_TTL_MS SHARDED
-- Keys of a channel share the hash tag {CHANNEL}, so in a cluster they live in
-- one slot, with the channel's pub/sub topic tutti:{CHANNEL}.
--
-- meta   (hash)   epoch, offset: the channel's epoch and last offset
-- stream (stream) entry ID OFFSET-0, fields e (event), d (data), t (ms time)
-- topic           each accepted message, as "EPOCH\nOFFSET\nEVENT\nTIME\nDATA"
-- tutti_publish answers {epoch, offset, time_ms}.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t
end

local function base36(n)
  local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    n = math.floor(n / 36)
  until n == 0
  return s
end

-- The channel's epoch, made (and the old stream dropped) when there is none.
local function epoch_of(meta, stream, meta_ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    local _, t = now_ms()
    epoch = base36(tonumber(t[1]) * 1000000 + tonumber(t[2]))
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  end
  if meta_ttl > 0 then redis.call('PEXPIRE', meta, meta_ttl) end
  return epoch
end

-- Drops history older than ttl_ms.
local function expire(stream, now, ttl_ms)
  while true do
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
    if #first == 0 then return end
    local fields = first[1][2]
    local t = 0
    for i = 1, #fields, 2 do
      if fields[i] == 't' then t = tonumber(fields[i + 1]) end
    end
    if t + ttl_ms > now then return end
    redis.call('XDEL', stream, first[1][1])
  end
end

-- ARGV: channel, event, data, maxlen, ttl_ms, meta_ttl_ms, sharded ('1'/'0')
local function publish_args(meta, stream, args)
  local channel, event, data = args[1], args[2], args[3]
  local maxlen, ttl, meta_ttl = tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
  local sharded = args[7] == '1'
  local now = now_ms()
  local epoch = epoch_of(meta, stream, meta_ttl)
  local offset = redis.call('HINCRBY', meta, 'offset', 1)
  if maxlen > 0 then
    redis.call('XADD', stream, 'MAXLEN', maxlen, offset .. '-0', 'e', event, 'd', data, 't', now)
    expire(stream, now, ttl)
    redis.call('PEXPIRE', stream, ttl)
  end
  local payload = epoch .. '\n' .. offset .. '\n' .. event .. '\n' .. now .. '\n' .. data
  local topic = 'tutti:{' .. channel .. '}'
  if sharded then
    redis.call('SPUBLISH', topic, payload)
  else
    redis.call('PUBLISH', topic, payload)
  end
  return {epoch, offset, now}
end

local function publish(keys, args)
  return publish_args(keys[1], keys[2], args)
end

-- A bridged message, published only by the holder of the bridge's lease, so
-- that exactly one node relays it even while the lease changes hands.
-- KEYS lease, meta, stream; ARGV node, then publish's arguments.
local function relay(keys, args)
  if redis.call('GET', keys[1]) ~= args[1] then return false end
  local rest = {}
  for i = 2, #args do rest[i - 1] = args[i] end
  return publish_args(keys[2], keys[3], rest)
end

-- Position and, when asked (SINCE_OFFSET not ''), what follows it:
-- {epoch, last, oldest, recovery, off1, event1, time1, data1, ...} with
-- recovery 0 none asked, 1 recovered, 2 history expired, 3 epoch changed,
-- 4 bad position (the numbering of engine_recovery_t).
local function history(keys, args)
  local meta, stream = keys[1], keys[2]
  local since_epoch, since_offset = args[1], args[2]
  local ttl, meta_ttl = tonumber(args[3]), tonumber(args[4])
  local now = now_ms()
  local epoch = epoch_of(meta, stream, meta_ttl)
  local last = tonumber(redis.call('HGET', meta, 'offset'))
  expire(stream, now, ttl)
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  local oldest = last + 1
  if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
  local out = {epoch, last, oldest, 0}
  if since_offset == '' then return out end
  local from
  local want = tonumber(since_offset)
  if since_epoch ~= '' and since_epoch ~= epoch then
    out[4] = 3
    from = oldest
  elseif want > last then
    out[4] = 4
    from = oldest
  elseif want + 1 < oldest then
    out[4] = 2
    from = oldest
  else
    out[4] = 1
    from = want + 1
  end
  if from > last then return out end
  local entries = redis.call('XRANGE', stream, from .. '-0', '+')
  for _, e in ipairs(entries) do
    local fields = e[2]
    local ev, d, t = 'message', '', 0
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then ev = fields[i + 1] elseif fields[i] == 'd' then d = fields[i + 1]
      elseif fields[i] == 't' then t = fields[i + 1] end
    end
    table.insert(out, tonumber(string.match(e[1], '^(%d+)')))
    table.insert(out, ev)
    table.insert(out, t)
    table.insert(out, d)
  end
  return out
end

-- Presence: KEYS hash (member -> info) and zset (member -> expiry ms).
-- ARGV op ('set', 'del', 'list'), member, info, ttl_ms. 'list' drops
-- expired members first and returns {member1, info1, ...}.
local function presence(keys, args)
  local hash, zset = keys[1], keys[2]
  local op, member, info, ttl = args[1], args[2], args[3], tonumber(args[4] or '0')
  local now = now_ms()
  if op == 'set' then
    redis.call('HSET', hash, member, info)
    redis.call('ZADD', zset, now + ttl, member)
    -- the keys live as long as their longest-lived member: never shorten
    for _, k in ipairs({hash, zset}) do
      if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
    end
    return 1
  elseif op == 'del' then
    redis.call('HDEL', hash, member)
    return redis.call('ZREM', zset, member)
  end
  local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', now)
  for _, m in ipairs(gone) do redis.call('HDEL', hash, m) end
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
  local out = {}
  local members = redis.call('ZRANGE', zset, 0, -1)
  for _, m in ipairs(members) do
    local v = redis.call('HGET', hash, m)
    if v then
      table.insert(out, m)
      table.insert(out, v)
    end
  end
  return out
end

redis.register_function('tutti_publish', publish)
redis.register_function('tutti_relay', relay)
redis.register_function('tutti_history', history)
redis.register_function('tutti_presence', presence)

-- {epoch or false, last offset, history length}, creating nothing.
redis.register_function{function_name = 'tutti_info', callback = function(keys, args)
  local epoch = redis.call('HGET', keys[1], 'epoch')
  local last = tonumber(redis.call('HGET', keys[1], 'offset') or '0')
  return {epoch or false, last, redis.call('XLEN', keys[2])}
end, flags = {'no-writes'}}

-- A lease for the bridge relay: KEYS lock, ARGV node, ttl_ms. Returns 1 when
-- `node` holds it (taken or renewed), 0 when another node does.
redis.register_function('tutti_lease', function(keys, args)
  local holder = redis.call('GET', keys[1])
  if holder == false or holder == args[1] then
    redis.call('SET', keys[1], args[1], 'PX', tonumber(args[2]))
    return 1
  end
  return 0
end)
