"""The HTTP side of the one port: the page and its files, health, status and server info.

Served through websockets' ``process_request`` hook, so the page and the stream share a port.
"""

from __future__ import annotations

import dataclasses
import hmac
import http
import json
import mimetypes
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}


def response(
    status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> Response:
    headers = Headers(
        {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **(extra or {}),
        }
    )
    return Response(status.value, status.phrase, headers, body)


def text(status: http.HTTPStatus, body: str) -> Response:
    return response(status, body.encode(), "text/plain; charset=utf-8")


def json_response(obj: object) -> Response:
    return response(http.HTTPStatus.OK, json.dumps(obj, indent=1).encode(), "application/json")


def static_file(web_dir: Path, url_path: str) -> Path | None:
    """The file under ``web_dir`` that ``url_path`` names, or None (missing, hidden, outside)."""
    rel = unquote(url_path).lstrip("/")
    if not rel or "\\" in rel or "\x00" in rel:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    root = web_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    if path.suffix not in CONTENT_TYPES:
        return None
    return path


def is_page(path: str) -> bool:
    """The page itself: ``/`` and every session link ``/s/<id>``."""
    return path == "/" or (path.startswith("/s/") and path.count("/") == 2 and len(path) > 3)


def same_origin(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page from ``origin`` may open the websocket: the page's own origin
    (the server's ``Host``), or one the operator allowed (``*`` allows any)."""
    if "*" in allowed or origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class Routes:
    """Answers every HTTP request but the websocket handshake: GET and HEAD only."""

    def __init__(
        self,
        web_dir: Path,
        info: dict[str, object],
        status: Callable[[bool], dict[str, object]],
        operator_token: str | None = None,
    ) -> None:
        self.web_dir = web_dir
        self.info = info
        self.status = status
        self.operator_token = operator_token

    def respond(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            body = f"method {method[:20]} not allowed\n".encode()
            return response(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                body,
                "text/plain; charset=utf-8",
                {"Allow": "GET, HEAD"},
            )
        answer = self._get(target)
        if method == "HEAD":  # the same headers (Content-Length included), no body
            return dataclasses.replace(answer, body=b"")
        return answer

    def _operator(self, query: str) -> bool:
        token = parse_qs(query).get("token", [""])[0]
        return self.operator_token is not None and hmac.compare_digest(
            token.encode(), self.operator_token.encode()
        )

    def _get(self, target: str) -> Response:
        url = urlsplit(target)
        path = url.path
        if path == "/healthz":
            return text(http.HTTPStatus.OK, "ok\n")
        if path == "/status":  # aggregates; per-session detail only for the operator
            return json_response(self.status(self._operator(url.query)))
        if path == "/api/info":
            return json_response(self.info)
        file = self.web_dir / "index.html" if is_page(path) else static_file(self.web_dir, path)
        if file is None:
            return text(http.HTTPStatus.NOT_FOUND, f"not found: {path[:200]}\n")
        content_type = CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        return response(
            http.HTTPStatus.OK, file.read_bytes(), content_type or "application/octet-stream"
        )
