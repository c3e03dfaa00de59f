-- wrk script for bench/ingest.py: unique Segment messages, and an open-loop (fixed-rate) mode.
--
-- Configured through the environment (wrk passes no arguments to setup):
--   BENCH_KIND   batch | track | noop | decide | t | b (t and b: /v1/track and /v1/batch bodies
--                sent as analytics-next sends them: to /v1/t and /v1/b, text/plain, writeKey in the
--                body, an Origin header, no Authorization)
--   BENCH_WRITE_KEY  the write key the t and b bodies carry
--   BENCH_AUTH   the Authorization header (Basic with the write key)
--   BENCH_RUN    a prefix that makes messageIds unique across runs
--   BENCH_BATCH  events per batch request (default 100)
--   BENCH_PEOPLE size of the population events are drawn from (default 20000)
--   BENCH_RATE   requests/s per connection; 0 or unset = closed loop (as fast as answers come)
--   BENCH_OUT    where done() writes its JSON summary
--
-- Open loop: run with one connection per thread (-t N -c N). Each connection sends on its own
-- fixed schedule; a request's latency is taken from the time it was scheduled to go whenever the
-- connection was still busy with the previous answer at that time, so a slow server is not hidden
-- by the client waiting for it (coordinated omission), and from the time it was sent otherwise
-- (wrk's timer only has millisecond resolution).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local kind = os.getenv("BENCH_KIND") or "track"
local write_key = os.getenv("BENCH_WRITE_KEY") or ""
local browser = kind == "t" or kind == "b"
local shape = ({ t = "track", b = "batch" })[kind] or kind
local auth = os.getenv("BENCH_AUTH") or ""
local run = os.getenv("BENCH_RUN") or "r"
local batch_size = tonumber(os.getenv("BENCH_BATCH") or "100")
local people = tonumber(os.getenv("BENCH_PEOPLE") or "20000")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local out = os.getenv("BENCH_OUT")

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local seq = 0
local paths = { "/", "/pricing", "/products/shoes", "/cart", "/checkout", "/blog/launch" }
local events = { "Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Search" }
local plans = { "free", "pro", "team" }

local function ts_iso(offset_ms)
  -- A fixed recent device clock; the service corrects skew with sentAt, the value does not matter.
  local ms = 500 + offset_ms
  return string.format("2026-11-23T10:%02d:%02d.%03dZ", math.floor(ms / 60000) % 60, math.floor(ms / 1000) % 60,
    ms % 1000)
end

local function context(p)
  return string.format(
    '{"ip":"10.%d.%d.%d","locale":"en-GB","library":{"name":"analytics.js","version":"5.2.0"},'
      .. '"page":{"path":"%s","referrer":"https://www.google.com/","url":"https://shop.example.com%s"},'
      .. '"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}',
    p % 250, (p * 7) % 250, (p * 13) % 250, paths[p % #paths + 1], paths[p % #paths + 1])
end

-- One message: a realistic mix of anonymous browsing, signed-in activity and identify calls that
-- link an anonymous id to a user id and an email, over a population of `people`. Without a type
-- (the /v1/track body) it is always a track.
local function message(with_type)
  seq = seq + 1
  local p = math.random(people)
  local r = math.random(100)
  local id = string.format('"messageId":"%s-%d-%d"', run, tid, seq)
  local when = string.format('"originalTimestamp":"%s"', ts_iso(seq % 1000))
  local t = with_type and '"type":"track",' or ""
  if with_type and r <= 10 then
    t = with_type and '"type":"identify",' or ""
    return string.format(
      '{%s%s,%s,"anonymousId":"anon-%d","userId":"user-%d","traits":{"email":"person%d@example.com","plan":"%s","name":"Person %d"},"context":%s}',
      t, id, when, p, p, p, plans[p % #plans + 1], p, context(p))
  end
  local who
  if r <= 60 then
    who = string.format('"anonymousId":"anon-%d"', p)
  elseif r <= 90 then
    who = string.format('"userId":"user-%d"', p)
  else
    who = string.format('"anonymousId":"anon-%d","userId":"user-%d"', p, p)
  end
  if with_type and r % 5 == 0 then
    return string.format('{"type":"page",%s,%s,%s,"name":"%s","properties":{"path":"%s"},"context":%s}',
      id, when, who, paths[p % #paths + 1], paths[p % #paths + 1], context(p))
  end
  return string.format(
    '{%s%s,%s,%s,"event":"%s","properties":{"sku":"SKU-%d","price":%d.99,"currency":"EUR","category":"shoes","quantity":%d},"context":%s}',
    t, id, when, who, events[seq % #events + 1], p % 5000, p % 300, r % 3 + 1, context(p))
end

-- A /v1/decide request for one of the population (bench/decide.py made every tenth a VIP).
local function decide_body()
  local p = math.random(people)
  return string.format(
    '{"userId":"user-%d","channel":"web","placement":"support_entry","context":{"page":"%s","locale":"en-GB"}}',
    p, paths[p % #paths + 1])
end

local function segment_body()
  if kind == "decide" then
    return decide_body()
  end
  if shape == "batch" then
    local parts = {}
    for i = 1, batch_size do
      parts[i] = message(true)
    end
    return '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"' .. ts_iso(2000) .. '"}'
  end
  local m = message(false)
  return m:sub(1, -2) .. ',"sentAt":"' .. ts_iso(2000) .. '"}'
end

local function body()
  local b = segment_body()
  if browser then
    return '{"writeKey":"' .. write_key .. '",' .. b:sub(2)
  end
  return b
end

local path = ({
  batch = "/v1/batch", track = "/v1/track", noop = "/bench/noop", decide = "/v1/decide", t = "/v1/t", b = "/v1/b",
})[kind]
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = auth }
if browser then
  headers = { ["Content-Type"] = "text/plain", ["Origin"] = "https://shop.example.com" }
end

-- Open-loop bookkeeping (one connection per thread).
local interval = rate > 0 and 1000000 / rate or 0
local next_at = nil
local scheduled = 0
local sent_at = 0
local answered_at = 0
lat = {}
local n = 0

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

local function open_loop_delay()
  local now = now_us()
  if next_at == nil then
    -- Spread the connections' first sends over one interval.
    next_at = now + math.random() * interval
  end
  local wait = (next_at - now) / 1000
  return wait > 0 and math.floor(wait) or 0
end

-- wrk only schedules through delay() when the script defines it: closed-loop runs do without.
if interval > 0 then
  delay = open_loop_delay
end

function request()
  if interval > 0 then
    local now = now_us()
    if next_at == nil then
      next_at = now
    end
    scheduled = next_at
    -- Late because the previous answer came after this one was due: count from when it was due.
    sent_at = (answered_at > scheduled) and scheduled or now
    next_at = next_at + interval
  end
  if kind == "noop" then
    return wrk.format("GET", path, headers)
  end
  return wrk.format("POST", path, headers, body())
end

function response(status, hdrs, b)
  if interval > 0 then
    answered_at = now_us()
    n = n + 1
    lat[n] = answered_at - sent_at
  end
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    local l = thread:get("lat")
    if l then
      for _, v in ipairs(l) do
        all[#all + 1] = v
      end
    end
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then
      return -1
    end
    local i = math.max(1, math.ceil(#all * p / 100))
    return all[i]
  end
  local e = summary.errors
  local json = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},'
      .. '"open_loop_latency_us":{"count":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d}}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean, #all, pct(50), pct(90), pct(95), pct(99), #all > 0 and all[#all] or -1)
  if out then
    local f = io.open(out, "w")
    f:write(json)
    f:close()
  else
    io.write(json .. "\n")
  end
end
