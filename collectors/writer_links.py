"""The telemetry writer's gateway connections ("links"): the one that started it, and workers that connect.

A single gateway process starts the writer with one end of a socket pair: that is the *control* link, and
when it closes (or says ``close``) the writer finishes and exits.  With ``loomgate serve --workers N`` the
supervisor holds the control link and each gateway worker connects to the writer's Unix socket
(``WriterSettings.listen``, in a private 0700 directory; ``multiprocessing.connection``'s HMAC challenge with
``WriterSettings.authkey`` refuses any other peer) and gets a link of its own.

Every batch belongs to the link it arrived on.  Its acknowledgement, and the announcement of a combination
it is part of, go to that link only, and batches of different links are never combined: each gateway holds,
spills and replays exactly the units the writer may have inserted under their ids, so the exactly-once
guarantee stays per gateway process.  A worker that closes its link (``close``) gets ``closed`` once every
batch it sent before is settled; a worker that vanishes only loses its acknowledgements: its batches are
still inserted or spooled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection, Listener
from typing import Any

log = logging.getLogger("loomgate.writer")


class Link:
    """One gateway connection: sends are serialised (several writer threads answer on it)."""

    __slots__ = ("_lock", "conn", "control", "name", "open", "pipeline")

    def __init__(self, conn: Connection, name: str, *, control: bool) -> None:
        self.conn = conn
        self.name = name
        self.control = control
        self.open = True
        self.pipeline: dict[str, int] = {}  # the gateway's own pipeline counters, from its last batch
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        # The gateway may be gone; its receiver then sees EOF and the link is dropped.
        with self._lock, contextlib.suppress(OSError):
            if self.open:
                self.conn.send_bytes(data)

    def close(self) -> None:
        with self._lock:
            self.open = False
            with contextlib.suppress(OSError):
                self.conn.close()


class LinkClosing:
    """Inbox marker: ``link`` asked to close; everything it sent before is ahead of this marker."""

    __slots__ = ("link",)

    def __init__(self, link: Link) -> None:
        self.link = link


class LinkHub:
    """The writer's links, who owns which batch, and the listener workers connect to."""

    def __init__(self, control: Connection) -> None:
        self.control = Link(control, "control", control=True)
        self._lock = threading.Lock()
        self._links: list[Link] = [self.control]
        self._owner: dict[str, Link] = {}
        self._departed: dict[str, int] = {}  # final pipeline counters of links that went away
        self._listener: Listener | None = None
        self._path = ""
        self._seq = 0

    # -- ownership -----------------------------------------------------------------------------------

    def own(self, batch_id: str, link: Link) -> None:
        with self._lock:
            self._owner[batch_id] = link

    def owner(self, batch_id: str, *, release: bool = False) -> Link:
        """The link a batch came on (the control link for a batch of unknown origin: a replayed one)."""
        with self._lock:
            link = self._owner.pop(batch_id, None) if release else self._owner.get(batch_id)
        return link or self.control

    def combine_owner(self, batch_id: str, member_ids: Iterable[str]) -> Link:
        """Move the members' ownership to their combination (all members share one link)."""
        with self._lock:
            owners = [self._owner.pop(i, None) for i in member_ids]
            link = next((o for o in owners if o is not None), self.control)
            self._owner[batch_id] = link
        return link

    def split(self, batches: list[Any]) -> list[list[Any]]:
        """``batches`` in groups of one link each, in arrival order within a group."""
        groups: dict[int, list[Any]] = {}
        with self._lock:
            for b in batches:
                groups.setdefault(id(self._owner.get(b.batch_id, self.control)), []).append(b)
        return list(groups.values())

    # -- messages ------------------------------------------------------------------------------------

    def send(self, link: Link, msg: tuple[Any, ...]) -> None:
        link.send(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))  # fail here, not half-way on the wire

    def broadcast(self, msg: tuple[Any, ...]) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.send(data)

    def pipeline(self) -> dict[str, int]:
        """The gateways' pipeline counters summed: live links' latest plus those of links gone."""
        with self._lock:
            total = dict(self._departed)
            for link in self._links:
                for key, value in link.pipeline.items():
                    total[key] = total.get(key, 0) + value
        return total

    def drop(self, link: Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
                for key, value in link.pipeline.items():
                    self._departed[key] = self._departed.get(key, 0) + value
        if not link.control:
            link.close()

    # -- listener ------------------------------------------------------------------------------------

    def listen(self, path: str, authkey: bytes, serve: Callable[[Link], None],
               greeting: Callable[[], tuple[Any, ...]]) -> None:
        """Accept workers on ``path``; each new link gets ``greeting()`` and a thread running ``serve``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a writer that died
        old_umask = os.umask(0o177)
        try:
            self._listener = Listener(path, family="AF_UNIX", authkey=authkey)
        finally:
            os.umask(old_umask)
        self._path = path
        threading.Thread(target=self._accept, args=(self._listener, serve, greeting), name="writer-accept",
                         daemon=True).start()

    def _accept(self, listener: Listener, serve: Callable[[Link], None],
                greeting: Callable[[], tuple[Any, ...]]) -> None:
        while True:
            try:
                conn = listener.accept()
            except OSError:  # closed: the writer is shutting down
                return
            except Exception as exc:  # a peer that failed the challenge, or hung up during it
                log.warning("refused a connection to the writer socket: %s", exc)
                continue
            with self._lock:
                self._seq += 1
                link = Link(conn, f"worker-link-{self._seq}", control=False)
                self._links.append(link)
            self.send(link, greeting())
            threading.Thread(target=serve, args=(link,), name=link.name, daemon=True).start()

    def stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()  # also removes the socket file


def merge_pipeline(link: Link, gauges: Mapping[str, Any]) -> None:
    if isinstance(gauges.get("pipeline"), Mapping):
        link.pipeline = dict(gauges["pipeline"])  # one atomic rebinding
