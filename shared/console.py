"""What the web console's page may load (its Content-Security-Policy), one policy for the
local stack (functions/local/server.py) and CloudFront (infra/constructs/console.py).

Scripts, styles and sockets from its own origin; ``blob:`` for the recordings and images
it fetches with its token; inline styles for uPlot; and, for what goes straight to
storage or comes back from it (presigned uploads above the API's limit, playback and
exports of large files redirected there), the storage origins named.
"""

from __future__ import annotations

from collections.abc import Iterable


def console_csp(storage: Iterable[str] = ()) -> str:
    """The policy, with ``storage`` (origins like ``https://bucket.s3.amazonaws.com``)
    allowed as the targets of the page's requests."""
    connect = " ".join(("'self'", *storage))  # 'self' covers its own ws:/wss: (CSP 3)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' blob: data:; media-src 'self' blob:; connect-src {connect}; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
