"""The /v1 hot path: a pure-ASGI entrance and the ordered steps every forwarded request takes."""
