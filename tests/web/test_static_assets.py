"""Static files under content-hashed names: cached for a year, renamed when they change, module
imports rewritten to the hashed names, gzip when accepted, the old name still served."""

from __future__ import annotations

import gzip
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from vllm_gateway.web.errors import install_error_handlers
from vllm_gateway.web.static_assets import LONG_CACHE, StaticAssets


def _client(assets: StaticAssets) -> TestClient:
    async def serve(request: Request) -> Response:
        return assets.response(request, request.path_params["path"])

    app = Starlette(routes=[Route("/static/{path:path}", serve, methods=["GET", "HEAD"])])
    install_error_handlers(app)  # type: ignore[arg-type]
    return TestClient(app)


def test_hashed_names_change_with_the_content_of_a_file_and_of_its_imports(
    tmp_path: Path,
) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "common.js").write_text("export const answer = 42;\n" * 40)
    (tmp_path / "js" / "page.js").write_text('import { answer } from "./common.js";\n')
    first = StaticAssets(tmp_path)
    page_url, common_url = first.url("js/page.js"), first.url("js/common.js")
    assert page_url.startswith("/static/js/page.") and page_url.endswith(".js")
    page = first.get("js/page.js")
    assert page is not None
    assert f'from "./{common_url.rsplit("/", 1)[1]}"' in page.body.decode()

    (tmp_path / "js" / "common.js").write_text("export const answer = 43;\n" * 40)
    second = StaticAssets(tmp_path)
    assert second.url("js/common.js") != common_url
    assert second.url("js/page.js") != page_url  # its import changed, so does its name


def test_responses_cache_hashed_names_for_good_and_compress(tmp_path: Path) -> None:
    (tmp_path / "app.css").write_text("body { color: black; }\n" * 100)
    assets = StaticAssets(tmp_path)
    client = _client(assets)
    url = assets.url("app.css")
    answer = client.get(url, headers={"accept-encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == LONG_CACHE
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["content-type"].startswith("text/css")
    assert int(answer.headers["content-length"]) < 200  # 2,300 bytes of CSS, compressed
    assert answer.text == (tmp_path / "app.css").read_text()  # httpx decodes it
    plain = client.get("/static/app.css", headers={"accept-encoding": "identity"})
    assert plain.headers["cache-control"] == "no-cache"
    assert "content-encoding" not in plain.headers
    stale = client.get("/static/app.000000000000.css")  # a name from before a deploy
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    again = client.get(url, headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304
    assert gzip.decompress(assets.get("app.css").gzipped or b"") == plain.content  # type: ignore[union-attr]


def test_nothing_outside_the_folder_and_no_such_file(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "secret.txt").write_text("no")
    client = _client(StaticAssets(tmp_path / "static"))
    for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/missing.js"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"
