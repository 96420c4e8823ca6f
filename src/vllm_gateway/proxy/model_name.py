"""The `model` an aliased request's answer names: the public name the client asked for.

A model alias (fleet file `[aliases]`) hides the names behind it: /v1/models lists only the
public name, and the client, its key's allowlist, its limits and the books all see that
name. So the answer does too: the backend's own model name (a canary's version, an internal
checkpoint path) is replaced by the public name in the JSON body and in every streamed
event, as vLLM spells it (`"model":"name"`, with or without a space after the colon).

Only structural JSON can hold `"model":"name"` with bare quotes (a quote inside a string
value is escaped), so a byte replacement is exact, and it never splits: the stream relay
hands over whole events. Requests without an alias pay nothing: the relay picks the
renaming or the plain path once per answer, never per chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

Rename = Callable[[bytes], bytes]


def renamer(public: str, served: str) -> Rename:
    """A function that puts `public` wherever the answer names `served` as its model."""
    old, new = orjson.dumps(served), orjson.dumps(public)
    pairs = [(b'"model":' + old, b'"model":' + new), (b'"model": ' + old, b'"model": ' + new)]

    def rename(data: bytes) -> bytes:
        for before, after in pairs:
            if before in data:
                data = data.replace(before, after)
        return data

    return rename
