// The WebSocket paths' CloudFront Function (infra/cloudfront/ws_rewrite.js) against the
// recorded viewer-request events in events/: each names the request the origin must get
// (uri, query) or the answer the viewer must get (status).
//
// Run by tests/infra/test_console_cdn.py, which writes the function's code as the stack
// deploys it (for stage "dev") and passes its path as CRUCIBLE_WS_REWRITE_JS:
//   CRUCIBLE_WS_REWRITE_JS=/tmp/ws_rewrite.js node --test tests/infra/cloudfront/
//
// The code runs in a bare VM context (no require, process or Buffer: CloudFront's runtime
// has none), with only `console`, as CloudFront Functions give it.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const here = dirname(fileURLToPath(import.meta.url));
const codePath = process.env.CRUCIBLE_WS_REWRITE_JS;
assert.ok(codePath, "set CRUCIBLE_WS_REWRITE_JS to the function's code");

function load() {
  const context = vm.createContext({ console });
  vm.runInContext(readFileSync(codePath, "utf8"), context, { filename: codePath });
  const handler = vm.runInContext("handler", context);
  assert.equal(typeof handler, "function", "the code defines handler(event)");
  return handler;
}

// name -> every value, as the origin gets the query: multiValue (a repeated name) if the
// field has it, else its one value
function query(querystring) {
  const out = {};
  for (const name of Object.keys(querystring)) {
    const field = querystring[name];
    out[name] = field.multiValue ? field.multiValue.map((v) => v.value) : [field.value];
  }
  return out;
}

const cases = readdirSync(join(here, "events"))
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => ({ file: f, ...JSON.parse(readFileSync(join(here, "events", f), "utf8")) }));

test("there are recorded events", () => {
  assert.ok(cases.length >= 10, `only ${cases.length} events in ${join(here, "events")}`);
});

for (const c of cases) {
  test(`${c.file}: ${c.description}`, () => {
    const handler = load(); // a fresh context each time: no state carried between requests
    const event = structuredClone(c.event);
    const out = handler(event);
    if (c.expect.statusCode !== undefined) {
      // answered here: a response, never a request on to the stage
      assert.equal(out.statusCode, c.expect.statusCode);
      assert.equal(out.uri, undefined);
      assert.equal(out.headers["content-type"].value, "application/json");
      const body = JSON.parse(out.body.data);
      assert.equal(out.body.encoding, "text");
      assert.equal(typeof body.detail, "string");
      assert.equal(body.code, c.expect.statusCode === 400 ? "INVALID_REQUEST" : "NOT_FOUND");
      return;
    }
    assert.equal(out.statusCode, undefined, JSON.stringify(out));
    assert.equal(out.uri, c.expect.uri);
    assert.deepEqual(query(out.querystring), c.expect.querystring);
    // everything else passes through untouched: the method, the handshake's headers
    // (the ["bearer", token] subprotocols among them), cookies
    assert.equal(out.method, c.event.request.method);
    assert.deepEqual(out.headers, c.event.request.headers);
    assert.deepEqual(out.cookies, c.event.request.cookies);
  });
}
