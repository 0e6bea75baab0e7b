"""Relaying an upstream's response to the client: status, headers and body as they come.

Hop-by-hop headers are dropped and ``Via`` / ``X-Request-Id`` added.  ``Content-Length`` is kept when the
upstream sent one (the headers then leave with the first body bytes, one write instead of two), otherwise
the body is relayed chunked.  A response broken off by either side closes the client connection, so it can
never look complete; time blocked on a slow reader is the client's (``CallLimits.begin_client_wait``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientError, web

from gateway.call_limits import CallLimits
from gateway.call_state import Call, ClientGone
from gateway.headers import response_header_items

_NO_BODY_STATUSES = frozenset({204, 304})


class SizedResponse(web.StreamResponse):
    """A relayed response of known length: its headers go out with the first body bytes, in one write.

    (Responses of unknown length, streams, keep aiohttp's default of sending headers at once.)
    """

    _send_headers_immediately = False


async def relay(
    request: web.BaseRequest, c: Call, up: Any, status: int, limits: CallLimits
) -> tuple[web.StreamResponse, bool]:
    """Stream the upstream's response to the client; False when the upstream broke off mid-body."""
    length = up.headers.get("Content-Length")
    items = response_header_items(up.headers)  # framing headers dropped: the proxy sets them
    if length is not None:
        items.append(("Content-Length", length))  # else aiohttp sends chunked
    factory = web.StreamResponse if length is None else SizedResponse
    resp = factory(status=status, reason=up.reason, headers=items)  # one header mapping built
    resp.headers["X-Request-Id"] = c.request_id  # replaces one the upstream sent
    try:
        limits.begin_client_wait()
        await resp.prepare(request)
    except ConnectionError:
        up.close()
        raise ClientGone() from None
    except asyncio.CancelledError:
        if not limits.timed_out():
            raise
        abort(request, resp, up, c, "client_timeout", "client")
        return resp, True
    finally:
        limits.end_client_wait()
    if request.method != "HEAD" and status not in _NO_BODY_STATUSES and status >= 200:
        read = up.content.readany
        at_eof = up.content.at_eof
        write = resp.write
        while True:
            try:
                limits.begin_wait(owed=True)
                chunk = await read()
            except (TimeoutError, ClientError, OSError):
                abort(request, resp, up, c, "upstream_aborted", "upstream")
                return resp, False
            except asyncio.CancelledError:
                if not limits.timed_out():
                    raise
                abort(request, resp, up, c, "upstream_aborted", "upstream")
                return resp, False
            finally:
                limits.end_wait()
            if not chunk:
                break
            limits.begin_client_wait()  # blocked on a slow reader: the client's time, not the upstream's
            try:
                await write(chunk)
            except ConnectionError:
                abort(request, resp, up, c, "client_abort", "client")
                return resp, True
            except asyncio.CancelledError:
                if not limits.timed_out():
                    raise
                abort(request, resp, up, c, "client_timeout", "client")
                return resp, True
            finally:
                limits.end_client_wait()
            c.response_body_size += len(chunk)
            if at_eof():  # the upstream's body is complete: no need to wait for its end marker
                break
    limits.begin_client_wait()
    try:
        await resp.write_eof()
    except ConnectionError:
        abort(request, resp, up, c, "client_abort", "client")
        return resp, True
    except asyncio.CancelledError:
        if not limits.timed_out():
            raise
        abort(request, resp, up, c, "client_timeout", "client")
        return resp, True
    finally:
        limits.end_client_wait()
    up.release()
    c.status = status
    return resp, True


def abort(
    request: web.BaseRequest, resp: web.StreamResponse, up: Any, c: Call, error_type: str, source: str
) -> None:
    """Close the client connection so a broken response can never look complete."""
    up.close()
    resp.force_close()
    transport = request.transport
    if transport is not None:
        transport.close()
    c.status, c.error_type, c.error_source = 0, error_type, source
