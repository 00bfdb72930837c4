// CloudFront Function (cloudfront-js-2.0, viewer request) on the REST API's paths. Behind
// CloudFront the API sees an edge's address, not the client's, and the managed origin
// request policy that leaves Host out (as API Gateway needs) cannot add CloudFront's own
// CloudFront-Viewer-Address. So this function writes the viewer's address into its own
// header, over any value the client sent. The distribution adds a secret header of its
// own to each origin request (infra/constructs/console.py, ORIGIN_VERIFY_HEADER): the API
// believes this address only on a request that carries that secret, that is, one that
// came through CloudFront, never on a request sent to the API's own address.
function handler(event) {
  var request = event.request;
  request.headers["x-crucible-viewer-address"] = { value: event.viewer.ip };
  return request;
}
