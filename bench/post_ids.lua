-- wrk script: POST /kling/tasks with random ids read from a file, one id (retrieve) or
-- BATCH ids (retrieve_batch) per request, with the bearer token.
-- Usage: wrk -s post_ids.lua URL -- IDS_FILE TOKEN MODE [BATCH]
local ids = {}
local n = 0
local mode = "retrieve"
local batch = 100

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      ids[n] = line
    end
  end
  mode = args[3] or "retrieve"
  batch = tonumber(args[4] or "100")
  math.randomseed(os.time() + n)
  wrk.method = "POST"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["accept"] = "application/json"
  if args[2] and #args[2] > 0 then
    wrk.headers["authorization"] = "Bearer " .. args[2]
  end
end

function request()
  local body
  if mode == "retrieve_batch" then
    local parts = {}
    for i = 1, batch do
      parts[i] = '"' .. ids[math.random(n)] .. '"'
    end
    body = '{"action":"retrieve_batch","ids":[' .. table.concat(parts, ",") .. ']}'
  else
    body = '{"action":"retrieve","id":"' .. ids[math.random(n)] .. '"}'
  end
  return wrk.format(nil, nil, nil, body)
end
