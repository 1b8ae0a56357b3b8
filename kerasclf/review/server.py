"""Serve a review page on this machine only, and append its decisions to ``decisions.csv``.

The server listens on ``127.0.0.1`` at a free port; every address carries a random token
(``http://127.0.0.1:PORT/TOKEN/``), so no other page or user of the machine can read the page or
post decisions without it. Requests with another ``Host`` header are refused (DNS rebinding).
``POST TOKEN/decide`` takes one decision as JSON, checks that it names an image of the review,
a known action and a known class, and appends it through
:func:`kerasclf.data.decisions.append_decisions` (the one writer); the page is rendered afresh on
every load, so a reload shows every decision so far. The server stops on ``POST TOKEN/quit`` (the
page's ``q`` / finish), a few seconds after the page is closed (``TOKEN/closed``, sent by the
browser when the tab goes away; a reload within that time keeps it running), or on Ctrl-C.

Example:
    >>> server = ReviewServer(render, "review/decisions.csv", paths, classes)   # doctest: +SKIP
    >>> print(server.url); server.serve()                                        # doctest: +SKIP
"""
from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kerasclf.data.decisions import append_decisions
from kerasclf.errors import DataError

__all__ = ["ReviewServer", "CLOSE_GRACE_S"]

#: seconds the server waits after the page is closed before it stops (a reload comes back sooner)
CLOSE_GRACE_S = 4.0
_MAX_BODY = 64 * 1024


class ReviewServer:
    """A local HTTP server for one review page.

    Args:
        render: returns the page's HTML (called on every load, so it shows the latest decisions).
        decisions: the ``decisions.csv`` decisions are appended to.
        paths: the images of the review: a decision must name one of them.
        classes: the class names a relabel may use.
        port: 0 picks a free port.
        on_decision: called with each decision written (the CLI prints a count).

    Attributes:
        url: the page's address, token included.
        written: how many decisions this server appended.
    """

    def __init__(self, render: Callable[[], str], decisions: str | Path, paths: Iterable[str],
                 classes: Iterable[str], *, port: int = 0,
                 on_decision: Callable[[dict[str, Any]], None] | None = None):
        self.render, self.decisions = render, Path(decisions)
        self.paths, self.classes = set(paths), list(classes)
        self.token = secrets.token_urlsafe(24)
        self.on_decision = on_decision
        self.written = 0
        self._lock = threading.Lock()
        self._closing: threading.Timer | None = None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/{self.token}/"

    # ---------------------------------------------------------------- life cycle
    def serve(self) -> None:
        """Serve until ``quit``, the page closing, or Ctrl-C (:class:`KeyboardInterrupt` is re-raised
        after the socket is closed)."""
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self._cancel_close()
            self.httpd.server_close()

    def start(self) -> threading.Thread:
        """Serve on a background thread (tests, notebooks); :meth:`stop` ends it."""
        thread = threading.Thread(target=self.serve, name="kerasclf-review", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop serving (from any thread but the serving one)."""
        self.httpd.shutdown()

    def close(self) -> None:
        """Release the socket of a server that was never started (decisions made through :meth:`decide`)."""
        self.httpd.server_close()

    def _stop_soon(self, delay: float) -> None:
        self._cancel_close()
        self._closing = threading.Timer(delay, self.stop)
        self._closing.daemon = True
        self._closing.start()

    def _cancel_close(self) -> None:
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None

    # ---------------------------------------------------------------- decisions
    def decide(self, raw: Any) -> dict[str, Any]:
        """Check one posted decision and append it; returns the row written.

        Raises:
            DataError: not a decision of this review (unknown image, action or class).
        """
        if not isinstance(raw, dict):
            raise DataError("a decision is a JSON object with path, action, new_label and reason")
        row = {k: str(raw.get(k) or "") for k in ("path", "action", "new_label", "reason")}
        if row["path"] not in self.paths:
            raise DataError(f"{row['path'][:200]!r} is not an image of this review")
        if row["action"] == "relabel" and row["new_label"] not in self.classes:
            raise DataError(f"unknown class {row['new_label'][:100]!r}")
        with self._lock:
            written = append_decisions(self.decisions, [row])[0]
            self.written += 1
        if self.on_decision is not None:
            self.on_decision(written.to_row())
        return written.to_row()

    # ---------------------------------------------------------------- HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "kerasclf-review"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass  # quiet: the CLI prints what matters

            def _route(self) -> str | None:
                host = self.headers.get("Host", "")
                if host not in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
                    return None
                prefix = f"/{server.token}/"
                return self.path[len(prefix):] if self.path.startswith(prefix) else None

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Referrer-Policy", "no-referrer")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, value: Any) -> None:
                self._send(status, json.dumps(value).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                route = self._route()
                if route != "":
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                server._cancel_close()  # a reload after `closed`: keep serving
                self._send(HTTPStatus.OK, server.render().encode("utf-8"), "text/html; charset=utf-8")

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                route = self._route()
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(size, _MAX_BODY)) if size else b""
                if route is None or size > _MAX_BODY:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                elif route == "decide":
                    if not self.headers.get("Content-Type", "").startswith("application/json"):
                        self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
                        return
                    try:
                        self._json(HTTPStatus.OK, {"ok": True, "row": server.decide(json.loads(body or b"null"))})
                    except (ValueError, DataError) as exc:
                        self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                elif route == "quit":
                    self._json(HTTPStatus.OK, {"ok": True, "written": server.written})
                    server._stop_soon(0.1)
                elif route == "closed":
                    self._json(HTTPStatus.OK, {"ok": True})
                    server._stop_soon(CLOSE_GRACE_S)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        return Handler
