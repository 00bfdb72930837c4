"""Which router modules a request's path can reach, without importing any of them.

``routes.json`` lists every route's path template and the module that serves it,
generated from the full app (``python -m functions.api.routes``; a unit test keeps it
current). The Lambda handler builds an app of only the modules whose templates match the
path, included in the full app's order, so routing is the full app's: a module left out
has no route that could match. A path no template matches (a 404, /docs, /openapi.json)
gets the full app.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

TABLE = Path(__file__).with_name("routes.json")
_PARAM = re.compile(r"\{[^}/]+\}")


def _pattern(template: str) -> re.Pattern[str]:
    """``template`` as a regular expression, with or without its trailing slash (the app
    redirects one to the other)."""
    parts = _PARAM.split(template.rstrip("/") or "/")
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + "/?")


@cache
def _table() -> tuple[tuple[str, re.Pattern[str]], ...]:
    rows = json.loads(TABLE.read_text())
    return tuple((module, _pattern(template)) for module, template in rows)


def modules_for(path: str) -> frozenset[str] | None:
    """The modules with a route whose template matches ``path``; None when none does."""
    found = frozenset(m for m, pattern in _table() if pattern.fullmatch(path))
    return found or None


def generate() -> list[list[str]]:
    """Every (module, path template) of the full app, in route order."""
    from fastapi.routing import iter_route_contexts

    from functions.api.app import create_app
    from shared.settings import load_settings

    app = create_app(load_settings())
    rows = []
    for route in iter_route_contexts(app.routes):  # included routers' routes, prefixed
        module = getattr(route.endpoint, "__module__", "")
        if module.startswith("functions.api.routers."):
            rows.append([module.rpartition(".")[2], route.path])
    return [list(row) for row in dict.fromkeys(map(tuple, rows))]


if __name__ == "__main__":
    TABLE.write_text("[\n" + ",\n".join(json.dumps(row) for row in generate()) + "\n]\n")
    print(f"wrote {TABLE}")
