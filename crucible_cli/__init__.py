"""``crucible``: the command-line client of the Crucible API.

A pure client of the HTTP and WebSocket API (``CRUCIBLE_URL``): it imports nothing of the
platform (``shared``, ``functions``), so it runs on any machine with Python and its four
dependencies (typer, rich, httpx, websockets).
"""
