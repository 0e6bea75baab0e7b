"""Benchmark upstream: a tiny HTTP/1.1 keep-alive server on raw asyncio that answers every request with
the same small JSON body.

It costs a few microseconds per request, so the proxy under test (not the upstream) is the bottleneck.
Only what the benchmark sends is supported: requests with no body or a Content-Length body.

    python bench/fast_upstream.py --port 9101
"""

from __future__ import annotations

import argparse
import asyncio
import signal

BODY = b'{"artisan_id":"a1","listings":[{"listing_id":"L001","quantity":7}]}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
MAX_HEAD = 64 * 1024


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or b"0")
    return 0


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0  # request body bytes still to discard
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        out = bytearray()
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    break
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                break
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            self.skip = _content_length(head)
            out += RESPONSE
        if out:
            self.transport.write(bytes(out))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, reuse_address=True, backlog=4096)
    print(f"fast upstream on http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9101)
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
