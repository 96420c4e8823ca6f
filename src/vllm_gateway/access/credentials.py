"""The one rule for reading a credential from a request, shared by every route.

A client (or an admin) presents its key as `Authorization: Bearer <key>` or as
`x-api-key: <key>` (what Anthropic-style clients send). Both may be sent if they carry the
same key; two different keys in one request (in those headers, or a repeated header) are a
conflict, refused as a wrong key: the gateway never guesses which one was meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_BEARER = "bearer "


@dataclass(slots=True)
class CredentialReader:
    """Collects the credential headers of one request as they are met."""

    token: str | None = None
    conflict: bool = False

    def offer(self, name: bytes, value: bytes) -> None:
        """Look at one header (name lower-case, as ASGI servers give it)."""
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == _BEARER:  # other schemes (Basic, …) carry no key of ours
                self._take(text[7:].strip())
        elif name == b"x-api-key":
            self._take(value.decode("latin-1").strip())

    def _take(self, token: str) -> None:
        if not token:
            return
        if self.token is None:
            self.token = token
        elif token != self.token:
            self.conflict = True

    @property
    def presented(self) -> str | None:
        """The credential, or None when there is none, or two different ones."""
        return None if self.conflict else self.token


def read_credential(headers: Iterable[tuple[bytes, bytes]]) -> CredentialReader:
    """The credential of a request, from its raw ASGI headers."""
    reader = CredentialReader()
    for name, value in headers:
        if name in (b"authorization", b"x-api-key"):
            reader.offer(name, value)
    return reader
