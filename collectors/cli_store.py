"""Which store a command line talks to: ``--config FILE`` / ``--dsn DSN`` / ``--database DB`` resolved once.

Resolution (``resolve``):

* ``--config FILE`` loads the gateway config (telemetry settings, admin listener, SLAs); its store and
  database are the defaults.
* ``--dsn DSN`` replaces the store, ``--database DB`` the database (with or without a config).
* Neither ``--config`` nor ``--dsn``: an error, or the built-in telemetry defaults when the command allows
  them (``loomgate migrate``).

An embedded ``chdb://`` store is opened by one process at a time, and a running gateway keeps its store open.
So a command first asks the gateway's admin API (``admin_get``: admin listener from the config, admin token as
``Authorization: Bearer``); ``None`` back means nothing listens there and the command may open the store
itself (``open_store``), which refuses while a gateway that owns the store is running.
"""

from __future__ import annotations

import argparse
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from collectors.store import Store, StoreError, is_embedded, redact_dsn
from gateway.config import Config, TelemetryConfig

_ANY_HOST = ("0.0.0.0", "::", "")
_PROBE_TIMEOUT = 0.5  # seconds; a listener on loopback or the LAN answers a connect well within this


class StoreTargetError(Exception):
    """The store cannot be resolved or reached; the message names the file, flag or gateway at fault."""


@dataclass(frozen=True, slots=True)
class StoreTarget:
    dsn: str
    telemetry: TelemetryConfig  # store and database already reflect --dsn / --database
    config: Config | None = None  # the gateway config, when --config was given

    @property
    def database(self) -> str:
        return self.telemetry.database

    @property
    def gateway_owned(self) -> bool:
        """The config's gateway opens this very store (embedded), so only one of us may at a time."""
        return self.config is not None and is_embedded(self.dsn) and self.dsn == self.config.store_dsn


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` / ``--dsn`` / ``--database`` options every store-using command shares."""
    parser.add_argument("--config", help="gateway config file (telemetry: store, database, ttl, cluster; "
                                         "admin listener)")
    parser.add_argument("--dsn", help="store DSN (chdb:///path or http(s)://…); overrides the config's store")
    parser.add_argument("--database", help="database; overrides the config's (default 'otel')")


def resolve(config_path: str | Path | None, dsn: str | None, database: str | None, *,
            allow_defaults: bool = False) -> StoreTarget:
    """The store a command uses; ``StoreTargetError`` for a missing choice or an invalid config."""
    config = load_gateway_config(config_path) if config_path else None
    if config is not None:
        telemetry, default_dsn = config.telemetry, config.store_dsn
    elif dsn or allow_defaults:
        telemetry = TelemetryConfig()
        default_dsn = "chdb://" + str((Path(telemetry.data_dir) / "clickhouse").resolve())
    else:
        raise StoreTargetError("give --config FILE or --dsn DSN")
    chosen = dsn or default_dsn
    telemetry = replace(telemetry, store=chosen, database=database or telemetry.database)
    return StoreTarget(chosen, telemetry, config)


def load_gateway_config(path: str | Path) -> Config:
    """The gateway config; ``StoreTargetError`` listing every problem (each ``FILE:LINE: key: what``)."""
    from gateway.config_loader import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        problems = exc.problems or [f"{path}: invalid config"]
        raise StoreTargetError("invalid config:\n  " + "\n  ".join(problems)) from None


# ---------------------------------------------------------------------------------------- admin API


def admin_base_url(config: Config) -> str:
    """``http://host:port`` of the admin listener, as seen from this machine."""
    adm = config.admin_listener
    host = _connect_host(adm.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{adm.port}"


def _connect_host(host: str) -> str:
    # A listener bound to every address is reached on loopback.
    return "127.0.0.1" if host in _ANY_HOST else host


def admin_get(target: StoreTarget, path: str, params: Mapping[str, str] | None = None, *,
              timeout: float = 120.0) -> dict[str, Any] | None:
    """GET ``path`` from the running gateway's admin API; ``None`` when nothing listens there.

    Any other failure raises ``StoreTargetError`` with the gateway's own error message when it sent one.
    """
    config = require_config(target)
    if target.database != config.telemetry.database:
        # The gateway answers for its own database only; silently returning its data would be wrong.
        if not gateway_running(target):
            return None
        raise StoreTargetError(
            f"--database {target.database}: the running gateway ({admin_base_url(config)}) owns "
            f"{target.dsn} and answers for database {config.telemetry.database!r} only; drop --database "
            "or stop the gateway")
    url = admin_base_url(config) + path
    if params:
        url += "?" + urllib.parse.urlencode(dict(params))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {config.admin_listener.token}",
                                               "Accept": "application/json"})
    where = f"gateway admin API {admin_base_url(config)}{path}"
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise StoreTargetError(f"{where}: {exc.code}: {_error_message(exc)}") from None
    except urllib.error.URLError as exc:  # urllib reports a refused connection as URLError
        if isinstance(exc.reason, ConnectionRefusedError):
            return None  # no gateway: the caller may open the store itself
        raise StoreTargetError(f"{where}: {exc.reason}") from None
    except OSError as exc:  # timeouts and resets after connecting
        raise StoreTargetError(f"{where}: {exc}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise StoreTargetError(f"{where}: the answer is not JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise StoreTargetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The ``error.message`` of the gateway's JSON error body, else the start of whatever it sent."""
    try:
        raw = exc.read()
    except OSError:
        raw = b""
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip()[:300]
        return text or str(exc.reason or "error")


def gateway_running(target: StoreTarget) -> bool:
    """Something accepts connections on the config's admin listener (False without a config)."""
    if target.config is None:
        return False
    adm = target.config.admin_listener
    try:
        with socket.create_connection((_connect_host(adm.host), adm.port), timeout=_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def require_config(target: StoreTarget) -> Config:
    """The gateway config given with --config; ``StoreTargetError`` without one."""
    if target.config is None:
        raise StoreTargetError("the gateway's admin API needs --config FILE (admin listener and token)")
    return target.config


# ------------------------------------------------------------------------------------------- direct


def open_store(target: StoreTarget, *, instead: str = "") -> Store:
    """Open the store in this process; refuses an embedded store a running gateway has open.

    ``instead`` tells the user what to do rather than stopping the gateway (e.g. which admin API to use).
    """
    config = target.config
    if config is not None and target.gateway_owned and gateway_running(target):
        alternative = f", or {instead}" if instead else " first"
        raise StoreTargetError(
            f"a running gateway ({admin_base_url(config)}) owns the embedded store {target.dsn}; "
            f"stop it{alternative}")
    try:
        return Store(target.dsn, target.database)
    except StoreError:
        raise
    except Exception as exc:  # clickhouse-connect and chDB raise several unrelated types
        raise StoreError(f"cannot open store {redact_dsn(target.dsn)} database {target.database!r}: "
                         f"{exc}") from exc
