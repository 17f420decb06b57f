-- Prints wrk's summary as one JSON line (wrk's own --latency output has no p95).
done = function(summary, latency, requests)
  local non_2xx = summary.errors.status
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "non_2xx": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration / 1e6, non_2xx,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
