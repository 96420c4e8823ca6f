"""The pages' static files: content-hashed names, gzip, and long cache lifetimes.

`url("js/chat.js")` is `/static/js/chat.<hash>.js`, a name that changes whenever the content
does, so browsers may keep it for a year (`immutable`). Scripts' relative module imports
(`from "./common.js"`) are rewritten to the hashed names too, so a page loads each module once
and a changed module changes the names of the scripts that import it. Text files are served
gzip-compressed to clients that accept it. Each file is read and compressed once, on first use.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import Response

from vllm_gateway.errors import GatewayError

HASH_LENGTH = 12
LONG_CACHE = "public, max-age=31536000, immutable"
_HASHED = re.compile(rf"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{{{HASH_LENGTH}}})(?P<ext>\.[A-Za-z0-9]+)$")
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"']+\.js)\2""")
_COMPRESSIBLE = {".js", ".mjs", ".css", ".svg", ".json", ".map", ".txt", ".md", ".html"}
_MIN_COMPRESSED = 512


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file as served: its bytes, their gzip, its hash and media type."""

    body: bytes
    gzipped: bytes | None
    digest: str
    media_type: str


class StaticAssets:
    """The files under one directory, read, rewritten, hashed and compressed on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._assets: dict[str, Asset | None] = {}

    def url(self, path: str) -> str:
        """The content-hashed URL of static/<path> (the plain name if there is no such file)."""
        asset = self.get(path)
        return f"/static/{self._hashed_name(path, asset.digest) if asset else path}"

    def get(self, path: str, _seen: frozenset[str] = frozenset()) -> Asset | None:
        """The asset at `path` (relative, POSIX), or None."""
        if path in self._assets:
            return self._assets[path]
        file = (self.root / path).resolve()
        if not file.is_relative_to(self.root) or not file.is_file() or path in _seen:
            self._assets[path] = None
            return None
        body = file.read_bytes()
        suffix = file.suffix.lower()
        if suffix in (".js", ".mjs"):
            body = self._rewrite_imports(path, body, _seen | {path})
        digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
        compressible = suffix in _COMPRESSIBLE and len(body) >= _MIN_COMPRESSED
        media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if suffix in (".js", ".mjs"):
            media_type = "text/javascript"
        if media_type.startswith("text/") or suffix in (".js", ".svg", ".json"):
            media_type += "; charset=utf-8"
        asset = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0) if compressible else None,
            digest=digest,
            media_type=media_type,
        )
        self._assets[path] = asset
        return asset

    def _rewrite_imports(self, path: str, body: bytes, seen: frozenset[str]) -> bytes:
        folder = PurePosixPath(path).parent
        text = body.decode("utf-8")

        def hashed(match: re.Match[str]) -> str:
            target = _normalised(folder / match.group(3))
            asset = self.get(target, seen) if target is not None else None
            if asset is None:
                return match.group(0)
            name = PurePosixPath(self._hashed_name(target or "", asset.digest)).name
            relative = match.group(3).rsplit("/", 1)[0] + "/" + name
            return f"{match.group(1)}{match.group(2)}{relative}{match.group(2)}"

        return _IMPORT.sub(hashed, text).encode("utf-8")

    @staticmethod
    def _hashed_name(path: str, digest: str) -> str:
        stem, dot, ext = path.rpartition(".")
        return f"{stem}.{digest}.{ext}" if dot and "/" not in ext else f"{path}.{digest}"

    def response(self, request: Request, path: str) -> Response:
        """The answer to GET /static/<path>: current hashed names for good, others revalidated
        (an old hash gets the current file, so a page from before a deploy still works)."""
        asset, lasting = self.get(path), False
        match = _HASHED.match(path) if asset is None else None
        if match is not None:
            asset = self.get(match["stem"] + match["ext"])
            lasting = asset is not None and match["hash"] == asset.digest
        if asset is None:
            raise GatewayError(404, "No such file.", "not_found")
        etag = f'"{asset.digest}"'
        headers = {
            "Cache-Control": LONG_CACHE if lasting else "no-cache",
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=asset.media_type)
        return Response(body, headers=headers, media_type=asset.media_type)


def _normalised(path: PurePosixPath) -> str | None:
    """`path` without `.` and `..` parts, or None if it leaves the root."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)
