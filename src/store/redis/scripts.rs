//! The Lua scripts of the Redis store's two compare-then-write operations.
//! Each touches the one key it is given, so on a cluster it runs in that
//! key's slot.

/// `KEYS[1]`, `ARGV[1]` = the new record, `ARGV[2]` = TTL in ms. Stores the
/// record unless the key holds the same or a higher generation (a plain
/// entry counts as generation 0). Generations are 8 big-endian bytes after
/// the tag, so comparing them byte by byte compares the numbers.
pub(super) const PUT_VERSIONED: &str = r"
local function newer(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end
local current = redis.call('GET', KEYS[1])
if current then
  local held = '\0\0\0\0\0\0\0\0'
  if string.sub(current, 1, 1) == 'v' then held = string.sub(current, 2, 9) end
  if not newer(string.sub(ARGV[1], 2, 9), held) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// `KEYS[1]`, `ARGV[1]` = the expected value. Deletes the key only if its
/// value (after the tag, and the generation of a versioned entry) is the
/// expected one.
pub(super) const DELETE_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local value
if string.sub(current, 1, 1) == 'v' then
  value = string.sub(current, 10)
else
  value = string.sub(current, 2)
end
if value ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";
