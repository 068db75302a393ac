/**
 * The Lua scripts of the Redis broker and presence store. Each is one atomic
 * step on the keys of one channel (one hash tag; see keys.ts). ioredis sends
 * them with EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or
 * flushed server), in order on the connection.
 *
 * Times are the Redis server's clock (TIME), so every node agrees on ages.
 * The instance id key, when given, is the last key: a script that gets it
 * treats a stream whose meta carries another instance id as lost (see
 * redis-broker.ts, *Epochs*). On Redis Cluster the id key would be in
 * another slot, so it is not given: the meta carries the replication id of
 * the master that last wrote it instead, read with `INFO replication` in the
 * script (see redis-broker.ts, *Redis Cluster*).
 */

/** Shared Lua helpers: the clock, the channel's stream meta, age eviction. KEYS[1] meta, KEYS[2] history. */
const PRELUDE = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end

-- The stream: instance id, epoch, offset, age limit. A meta that is absent or from
-- another instance id is a new stream (its history goes): a new epoch, offset 0.
-- Without an id key (Redis Cluster), the instance is the master's replication id: a
-- meta written under another one is lost only if this master is a promoted replica
-- (a previous replication id, kept from the promotion until its next restart), and
-- otherwise (a restart with AOF changes the id too) takes the new id.
local function stream(idkey, newid, newepoch, metattl)
  local inst = ''
  local promoted = false
  if idkey then
    inst = redis.call('GET', idkey)
    if not inst then
      inst = newid
      redis.call('SET', idkey, inst)
    end
  else
    local info = redis.call('INFO', 'replication')
    inst = string.match(info, 'master_replid:(%x+)') or ''
    promoted = string.find(string.match(info, 'master_replid2:(%x+)') or '0', '[^0]') ~= nil
  end
  local m = redis.call('HMGET', KEYS[1], 'i', 'e', 'o', 'ttl')
  if m[2] and m[1] ~= inst and not idkey and not promoted then
    redis.call('HSET', KEYS[1], 'i', inst)
    m[1] = inst
  end
  if m[1] == inst and m[2] then return m[2], tonumber(m[3]), tonumber(m[4] or '0') end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'i', inst, 'e', newepoch, 'o', 0, 'ttl', 0)
  redis.call('PEXPIRE', KEYS[1], metattl)
  return newepoch, 0, 0
end

-- Drop history entries (<offset>:<time>:<payload>, oldest first) at least ttl ms old.
local function evict(now, ttl)
  if ttl <= 0 then return end
  while true do
    local first = redis.call('LINDEX', KEYS[2], 0)
    if not first then return end
    local a = string.find(first, ':', 1, true)
    local b = string.find(first, ':', a + 1, true)
    if now - tonumber(string.sub(first, a + 1, b - 1)) < ttl then return end
    redis.call('LPOP', KEYS[2])
  end
end
`;

/**
 * publish. KEYS: meta, history, idempotency key, [instance id].
 * ARGV: 1 pub/sub channel, 2 payload, 3 nonce, 4 volatile '1'|'0', 5 history
 * size, 6 history ttl ms, 7 use the idempotency key '1'|'0', 8 its ttl ms,
 * 9 meta ttl ms, 10 epoch for a new stream, 11 instance id if none,
 * 12 PUBLISH or SPUBLISH (Redis Cluster: the channel's shard), 13 '1': also
 * a plain PUBLISH of the frame (Redis Cluster, for pattern subscribers).
 * Returns [offset, epoch, duplicate 0|1].
 */
export const PUBLISH_LUA = `${PRELUDE}
local idkey = nil
if #KEYS >= 4 then idkey = KEYS[4] end
local now, nowstr = clock()
local epoch, offset, oldttl = stream(idkey, ARGV[11], ARGV[10], ARGV[9])

if ARGV[7] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local c = string.find(seen, ':', 1, true)
    -- A key from an earlier epoch (history removed, data lost) does not count.
    if c and string.sub(seen, c + 1) == epoch then return {tonumber(string.sub(seen, 1, c - 1)), epoch, 1} end
  end
end

if ARGV[4] == '1' then
  -- Volatile: delivered with the current position, never stored, no offset of its own.
  local frame = 'v' .. ARGV[3] .. ':' .. offset .. ':' .. epoch .. ':' .. nowstr .. ':' .. ARGV[2]
  redis.call(ARGV[12], ARGV[1], frame)
  if ARGV[13] == '1' then redis.call('PUBLISH', ARGV[1], frame) end
  return {offset, epoch, 0}
end

offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local size = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local metattl = tonumber(ARGV[9])
if size > 0 then
  redis.call('RPUSH', KEYS[2], offset .. ':' .. nowstr .. ':' .. ARGV[2])
  redis.call('LTRIM', KEYS[2], -size, -1)
  evict(now, ttl)
  redis.call('HSET', KEYS[1], 'ttl', ttl)
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
    redis.call('PEXPIRE', KEYS[1], math.max(metattl, ttl))
  else
    -- Kept until trimmed by size: the position must outlive it.
    redis.call('PERSIST', KEYS[2])
    redis.call('PERSIST', KEYS[1])
  end
else
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'ttl', 0)
  redis.call('PEXPIRE', KEYS[1], metattl)
end
local frame = 'p' .. ARGV[3] .. ':' .. offset .. ':' .. epoch .. ':' .. nowstr .. ':' .. ARGV[2]
redis.call(ARGV[12], ARGV[1], frame)
if ARGV[13] == '1' then redis.call('PUBLISH', ARGV[1], frame) end
if ARGV[7] == '1' then redis.call('SET', KEYS[3], offset .. ':' .. epoch, 'PX', ARGV[8]) end
return {offset, epoch, 0}
`;

/**
 * history. KEYS: meta, history, [instance id]. A quiet channel gets its meta
 * here (offset 0, a new epoch, meta ttl), so its epoch is stable and its
 * first publications continue it.
 * ARGV: 1 epoch for a new stream, 2 instance id if none, 3 meta ttl ms,
 * 4 since offset ('' for none), 5 since epoch, 6 limit (-1: all).
 * Returns [epoch, offset, recovered 0|1, entries].
 */
export const HISTORY_LUA = `${PRELUDE}
local idkey = nil
if #KEYS >= 3 then idkey = KEYS[3] end
local now = clock()
local epoch, offset, ttl = stream(idkey, ARGV[2], ARGV[1], ARGV[3])
evict(now, ttl)
local len = redis.call('LLEN', KEYS[2])
-- Retained entries have consecutive offsets ending at the stream's offset.
local first = offset - len + 1
local limit = tonumber(ARGV[6])
if ARGV[4] ~= '' then
  local since = tonumber(ARGV[4])
  if ARGV[5] ~= epoch or since > offset then return {epoch, offset, 0, {}} end
  local recovered = 0
  if first <= since + 1 then recovered = 1 end
  if since == offset or limit == 0 or len == 0 then return {epoch, offset, recovered, {}} end
  local start = math.max(0, since + 1 - first)
  local stop = -1
  if limit > 0 then stop = start + limit - 1 end
  return {epoch, offset, recovered, redis.call('LRANGE', KEYS[2], start, stop)}
end
if limit == 0 or len == 0 then return {epoch, offset, 0, {}} end
local start = 0
if limit > 0 then start = -limit end
return {epoch, offset, 0, redis.call('LRANGE', KEYS[2], start, -1)}
`;

/**
 * After (re)connecting to a master: KEYS id, replid. ARGV: 1 master_replid,
 * 2 master_replid2, 3 a new instance id. A master with a previous replication
 * id (replid2 not all zeros) is a promoted replica: Redis keeps replid2 only
 * from a promotion until the next restart. If its replication id is not the
 * one the last check recorded, nobody has seen it since the promotion, and
 * it may have missed writes: bump the instance id (every stream gets a new
 * epoch). A restart (with AOF) or a replica attaching changes the
 * replication id with replid2 all zeros: no bump. Returns 1 when bumped.
 */
export const FAILOVER_LUA = `
local known = redis.call('GET', KEYS[2])
local bumped = 0
if known and known ~= ARGV[1] and string.find(ARGV[2], '[^0]') then
  redis.call('SET', KEYS[1], ARGV[3])
  bumped = 1
end
redis.call('SET', KEYS[2], ARGV[1])
return bumped
`;

/**
 * Presence helpers. KEYS[1] entries (client → `<n>:<user><info>`), KEYS[2]
 * expiries (sorted set client → ms), KEYS[3] user counts.
 */
const PRESENCE_PRELUDE = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function user_of(v)
  local c = string.find(v, ':', 1, true)
  return string.sub(v, c + 1, c + tonumber(string.sub(v, 1, c - 1)))
end
local function uncount(user)
  if user == '' then return end
  if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then redis.call('HDEL', KEYS[3], user) end
end
local function drop(client)
  local v = redis.call('HGET', KEYS[1], client)
  if v then
    uncount(user_of(v))
    redis.call('HDEL', KEYS[1], client)
  end
  redis.call('ZREM', KEYS[2], client)
end
-- Entries whose node stopped refreshing them: dropped, and kept in KEYS[4] until a node's
-- heartbeat takes them to announce their leave (so each is announced once, by one node).
local function expire(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, client in ipairs(dead) do
    local v = redis.call('HGET', KEYS[1], client)
    if v then redis.call('RPUSH', KEYS[4], v) end
    drop(client)
  end
end
local function keep(ttl)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
`;

/** add. ARGV: client, user, value, ttl ms. */
export const PRESENCE_ADD_LUA = `${PRESENCE_PRELUDE}
local now = clock()
expire(now)
drop(ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
if ARGV[2] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[2], 1) end
keep(tonumber(ARGV[4]))
return 1
`;

/** remove. ARGV: client. */
export const PRESENCE_REMOVE_LUA = `${PRESENCE_PRELUDE}
expire(clock())
drop(ARGV[1])
return 1
`;

/** get. Returns HGETALL of the live entries. */
export const PRESENCE_GET_LUA = `${PRESENCE_PRELUDE}
expire(clock())
return redis.call('HGETALL', KEYS[1])
`;

/** stats. Returns [clients, users]. */
export const PRESENCE_STATS_LUA = `${PRESENCE_PRELUDE}
expire(clock())
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}
`;

/**
 * refresh (heartbeat). ARGV: ttl ms, client ids. Returns [missing, gone]: the ids no longer
 * there (expired meanwhile: re-add them) and the values of other entries that expired since
 * the last heartbeat of any node (announce their leave; they are taken, so no other node does).
 */
export const PRESENCE_REFRESH_LUA = `${PRESENCE_PRELUDE}
local now = clock()
expire(now)
local ttl = tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
  else
    table.insert(missing, ARGV[i])
  end
end
local gone = redis.call('LRANGE', KEYS[4], 0, -1)
redis.call('DEL', KEYS[4])
keep(ttl)
return {missing, gone}
`;
