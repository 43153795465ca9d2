-- wrk script: POST /v1/search, for `just load`.
-- Arguments after `--`: the collection (default rust-book), then `repeat`
-- (the default: eight questions in turn, so the server's query cache
-- answers most of them) or `unique` (a number appended to every query, so
-- every request embeds its query).
local queries = {
  "what is ownership",
  "how do I share data between threads",
  "what is a trait object",
  "how do lifetimes work",
  "error handling with Result",
  "what does the borrow checker do",
  "iterators and closures",
  "smart pointers Box Rc RefCell",
}
local counter = 0
local collection = "rust-book"
local unique = false

init = function(args)
  collection = args[1] or collection
  unique = args[2] == "unique"
  -- Each wrk thread runs its own copy of this script: start them apart.
  counter = math.random(1, 1000000) * 1000
end

request = function()
  counter = counter + 1
  local query = queries[(counter % #queries) + 1]
  if unique then
    query = query .. " " .. counter
  end
  local body = string.format('{"query": "%s", "top_k": 5, "collection": "%s"}', query, collection)
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"}, body)
end
