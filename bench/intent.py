"""The chat's rules parser (shared/intent.py) over the corpus of tests/data/intent_corpus.json:
the share of fields read right, per language and per field, for each set of messages
(``main``: the rules were built on them; ``second``: written after the rules, which were
then fixed for its misses; ``fresh``: written after that and never tuned on, the honest
estimate) and all of them, the misses, and the time to read one message.

    .venv/bin/python bench/intent.py [--misses]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(right: int, total: int) -> str:
    return f"{100 * right / total:5.1f}% ({right}/{total})" if total else "  -"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--misses", action="store_true", help="print every field read wrong")
    args = ap.parse_args()

    from shared import intent
    from tests.unit.test_intent import FIELDS, context, corpus, score

    data = corpus()
    intent.ModelCatalogue.default()  # the catalogue is read once, not timed
    t0 = time.perf_counter()
    for entry in data["messages"]:
        intent.parse(entry["message"], context(entry, data))
    per_message_ms = 1000 * (time.perf_counter() - t0) / len(data["messages"])

    results = {name: score(only=name) for name in ("main", "second", "fresh")}
    results["all"] = score()
    sizes = {
        name: sum(1 for m in data["messages"] if name == "all" or m.get("set", "main") == name)
        for name in results
    }
    print(
        f"intent corpus: {sizes['all']} messages ({sizes['main']} main: the rules were built on "
        f"them; {sizes['second']} second: fixed for after a first score of 94.4%; "
        f"{sizes['fresh']} fresh: never tuned on)"
    )
    print(f"{'':16}" + "".join(f"{name:>22}" for name in results))
    for lang in ("ko", "en", "ja"):
        row = "".join(f"{pct(*r['languages'].get(lang, (0, 0))):>22}" for r in results.values())
        print(f"  language {lang:6}{row}")
    for field in FIELDS:
        row = "".join(f"{pct(*r['fields'][field]):>22}" for r in results.values())
        print(f"  {field:14}{row}")
    row = "".join(f"{pct(*r['total']):>22}" for r in results.values())
    print(f"  {'all fields':14}{row}")
    print(f"rules parser: {per_message_ms:.2f} ms per message")
    if args.misses:
        for message, field, expected, got in results["all"]["misses"]:
            print(f"  miss {field}: {message!r}: expected {expected!r}, got {got!r}")


if __name__ == "__main__":
    main()
