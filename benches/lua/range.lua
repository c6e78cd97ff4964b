-- wrk script for benches/load.sh: every request asks for one random range of the file.
-- Usage: wrk ... -s benches/lua/range.lua URL -- FILE_SIZE RANGE_LEN ALIGNED
--   FILE_SIZE  size of the file at URL, in bytes
--   RANGE_LEN  bytes per range (1048576 = 1 MiB)
--   ALIGNED    1: ranges start on a multiple of RANGE_LEN; 0: at any byte offset
-- Each response is a 206 with RANGE_LEN bytes; summary.errors.status counts any >= 400.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  size = tonumber(args[1])
  len = tonumber(args[2])
  aligned = args[3] ~= "0"
  if not size or not len or len > size then
    error("range.lua: arguments are FILE_SIZE RANGE_LEN ALIGNED")
  end
  math.randomseed(os.time() + 7919 * (tid or 0))
  for _ = 1, 8 do math.random() end
end

function request()
  local first
  if aligned then
    first = math.random(0, math.floor(size / len) - 1) * len
  else
    first = math.random(0, size - len)
  end
  return wrk.format(nil, nil, { Range = string.format("bytes=%.0f-%.0f", first, first + len - 1) })
end

-- The same machine-readable summary line as every other run.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")
