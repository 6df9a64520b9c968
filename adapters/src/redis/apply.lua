-- One batch of basket writes and the shard's cursor, atomically: Redis runs a script alone, and every
-- read comes before the first write, so a failing read leaves nothing half done.
--
-- KEYS[1]: the shard's cursor key; then for op i: KEYS[2i] the basket key, KEYS[2i+1] its version key.
-- ARGV[1]: the cursor's new value ('' leaves it); ARGV[2]: how long a tombstone lives at least (ms);
-- then 4 values per op: kind, version, JSON value, expiry (Unix ms). Kinds:
--   put:  write the basket (deleted instead if already expired) if `version` is newer than the stored one;
--   del:  delete it if `version` is newer;
--   gone: delete it if the stored version is not newer than `version` (a bootstrap removing what its
--         snapshot lacks), leaving `version` as the tombstone.
if redis.replicate_commands then
  redis.replicate_commands()
end

-- Versions are decimal strings without leading zeros, compared exactly (Lua numbers are doubles).
local function newer(a, b)
  if #a ~= #b then
    return #a > #b
  end
  return a > b
end

local keep = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ops = (#KEYS - 1) / 2

local stored = {}
for i = 1, ops do
  stored[i] = redis.call('GET', KEYS[2 * i + 1]) or '0'
end

-- A tombstone outlives the version key it replaces (which outlived its basket) and lives `keep` at least.
local function tombstone(vkey, version)
  local ttl = redis.call('PTTL', vkey)
  if ttl < keep then
    ttl = keep
  end
  redis.call('SET', vkey, version, 'PX', ttl)
end

local applied = 0
for i = 1, ops do
  local key, vkey = KEYS[2 * i], KEYS[2 * i + 1]
  local at = 3 + 4 * (i - 1)
  local kind, version = ARGV[at], ARGV[at + 1]
  local write
  if kind == 'gone' then
    write = not newer(stored[i], version)
  else
    write = newer(version, stored[i])
  end
  if write then
    local expires = tonumber(ARGV[at + 3])
    if kind == 'put' and expires > now then
      redis.call('SET', key, ARGV[at + 2])
      redis.call('PEXPIREAT', key, expires)
      redis.call('SET', vkey, version)
      redis.call('PEXPIREAT', vkey, expires + keep)
    else
      redis.call('DEL', key)
      tombstone(vkey, version)
    end
    applied = applied + 1
  end
end

if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1])
end
return applied
