// CloudFront Function (cloudfront-js-2.0, viewer request) on the WebSocket paths of every
// seed. API Gateway's WebSocket API has one URL per stage, so each path is rewritten to
// the stage's and what the path named goes into the query string, exactly as the local
// dev server hands it to $connect (functions/local/server.py, params()): the caller's
// query, with the path's own values over it.
//
//   /ws                 -> format=seed000 (the caller's ?topic= if any, else their own)
//   /ws/workflows/{id}  -> topic=job:{id} and format=seed003
//   /api/v1/ws          -> the query as sent (?topic=&format=)
//
// Everything else in the query (?token=) is kept. A workflow id that shared/events.py's
// TOPIC_RE would not take is answered 400 here and never reaches the stage, so nothing
// in the path can add to or reshape the query.
//
// infra/constructs/console.py replaces the stage path below when it synthesizes the
// function; tests/infra/cloudfront/ runs this file in Node against recorded events.

var STAGE_PATH = "/__STAGE__";
var WORKFLOWS = "/ws/workflows/";
var WORKFLOW_ID = /^[A-Za-z0-9_-]{1,64}$/;

function answer(statusCode, statusDescription, detail, code, field) {
  return {
    statusCode: statusCode,
    statusDescription: statusDescription,
    headers: {
      "content-type": { value: "application/json" },
      "cache-control": { value: "no-store" },
    },
    // the API's error body (shared/errors.py)
    body: {
      encoding: "text",
      data: JSON.stringify({ detail: detail, code: code, field: field }),
    },
  };
}

// One value for the name, whatever the caller sent under it (a repeated name included):
// the path's value wins, as a dict update does on the server.
function fix(querystring, name, value) {
  querystring[name] = { value: value };
}

function handler(event) {
  var request = event.request;
  var uri = request.uri;
  var qs = request.querystring;
  if (uri === "/ws") {
    fix(qs, "format", "seed000");
  } else if (uri.startsWith(WORKFLOWS)) {
    var id = uri.slice(WORKFLOWS.length);
    if (!WORKFLOW_ID.test(id)) {
      return answer(
        400,
        "Bad Request",
        "A workflow id is 1 to 64 letters, digits, '_' or '-': /ws/workflows/<id>",
        "INVALID_REQUEST",
        "workflow_id"
      );
    }
    fix(qs, "topic", "job:" + id);
    fix(qs, "format", "seed003");
  } else if (uri !== "/api/v1/ws") {
    return answer(
      404,
      "Not Found",
      "No WebSocket endpoint here: use /ws, /ws/workflows/<id> or /api/v1/ws",
      "NOT_FOUND",
      null
    );
  }
  request.uri = STAGE_PATH;
  return request;
}
