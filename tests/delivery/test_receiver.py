"""The test receiver itself: a sender killed mid-request is no delivery and no bad signature."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests.delivery.receiver import Receiver, serve


def test_a_body_cut_short_by_a_killed_sender_is_counted_apart() -> None:
    # httpx writes the headers and the body apart, so a SIGKILL between the two leaves this.
    with serve(Receiver()) as receiver:
        url = urlsplit(receiver.url)
        with socket.create_connection((url.hostname, url.port)) as sender:
            sender.sendall(
                f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n".encode()
            )
        deadline = time.monotonic() + 5
        while receiver.cut == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert (receiver.cut, receiver.unsigned, receiver.deliveries) == (1, 0, [])
