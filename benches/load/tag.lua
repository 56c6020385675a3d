-- wrk script: POST /v1/tag with memo texts from the development set, round robin.
local texts = {}
local i = 0
for line in io.lines(os.getenv("NEEDTAG_TEXTS") or "need-library/eval/dev.jsonl") do
  local t = line:match('"text": "(.-)", "recorded_at"')
  if t then texts[#texts + 1] = t end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #texts + 1
  return wrk.format(nil, "/v1/tag", nil, '{"text": "' .. texts[i] .. '"}')
end
