"""A pass-through HTTP proxy in front of the emulator for race tests: it stamps each answer's Date
header from the emulator's clock (minus a lag), and can hold an answer, already read from the
emulator, until the test lets it go."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from orchestration.emulator import Emulator

# Hop-by-hop headers and the ones the proxy sets itself.
_DROPPED = {"connection", "content-length", "date", "server", "transfer-encoding", "host"}

# Called with the request path once the emulator answered, before the answer is sent on: it
# may block (hold the answer) for as long as the test needs.
Hook = Callable[[str], None]


class StripeProxy:
    """Forwards GETs to the emulator. The Date header says the emulator's clock (the clock of its
    events' `created`) minus `lag()` seconds, read when the emulator answered: as Stripe's Date
    does, it never runs ahead of the event clock and may lag it."""

    def __init__(self, emu: Emulator, lag: Callable[[], int] = lambda: 0) -> None:
        self.emu = emu
        self.lag = lag
        self.hook: Hook | None = None
        target = urlsplit(emu.url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream = http.client.HTTPConnection(*proxy._target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED}
                upstream.request("GET", self.path, headers=headers)
                answer = upstream.getresponse()
                body = answer.read()
                date = formatdate(proxy.emu.now() - proxy.lag(), usegmt=True)
                answer_headers = [
                    (k, v) for k, v in answer.getheaders() if k.lower() not in _DROPPED
                ]
                upstream.close()
                if proxy.hook is not None:
                    proxy.hook(self.path)
                self.send_response_only(answer.status)
                for name, value in answer_headers:
                    self.send_header(name, value)
                self.send_header("Date", date)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[StripeProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
