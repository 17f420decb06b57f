-- A steady pace of requests: every connection waits `BODHI_DELAY_MS` before each request (wrk's
-- delay()), so that the rate is set by the number of connections. With `BODHI_UNKNOWN_NAMES=1`, each
-- request is a chat naming a model that does not exist, a different name each time; otherwise a
-- GET of the URL (the same pace of plain requests, as a baseline). Reports wrk's summary as one
-- JSON line (wrk_report.lua's format).
local token = os.getenv("BODHI_TOKEN") or ""
local delay_ms = tonumber(os.getenv("BODHI_DELAY_MS") or "10")
local unknown_names = os.getenv("BODHI_UNKNOWN_NAMES") == "1"
local counter = 0

request = function()
  if not unknown_names then
    return wrk.format("GET")
  end
  counter = counter + 1
  local body = string.format(
    '{"model":"nobody/missing-%d-%d:Q4_0","messages":[{"role":"user","content":"Hello"}]}',
    math.random(1, 1000000), counter)
  return wrk.format("POST", "/v1/chat/completions",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end

delay = function()
  return delay_ms
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "non_2xx": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
