"""Partner authentication by API key, and the ``loomgate hash-key`` command.

Keys are stored only as SHA-256 hex digests.  A presented key is hashed first, so the work done and the
comparisons made depend on the digest, never on how many leading characters of the key were right; the
digest found is then confirmed with ``hmac.compare_digest``.  Keys are never logged or echoed.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from gateway.config import Partner

_DIGEST = re.compile(r"[0-9a-f]{64}")
_NO_MATCH = "0" * 64  # compared against when nothing matched, so both outcomes do the same work
# Whitespace inside a key makes it unusable; ``\s`` matches exactly the characters ``str.isspace`` does,
# in one C-level scan instead of a Python loop over the key.
_SPACE = re.compile(r"\s")


def hash_key(key: str) -> str:
    """SHA-256 hex digest of an API key (the form stored in the config)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def extract_key(headers: Mapping[str, str]) -> str | None:
    """The API key from ``Authorization: Bearer KEY`` (scheme case-insensitive) or ``X-Api-Key: KEY``.

    ``headers`` must be case-insensitive (aiohttp's request headers are).  Returns None when no usable key
    is present; an Authorization header with another scheme falls back to ``X-Api-Key``.
    """
    auth = headers.get("Authorization")
    if auth:
        scheme, _, rest = auth.strip().partition(" ")
        token = rest.strip()
        if scheme.lower() == "bearer" and token and _SPACE.search(token) is None:
            return token
    key = headers.get("X-Api-Key")
    if key:
        key = key.strip()
        if key and _SPACE.search(key) is None:
            return key
    return None


class KeyRing:
    """Digest → partner.  Raises ValueError for malformed digests or a digest shared by two partners."""

    def __init__(self, partners: Sequence[Partner]) -> None:
        self._by_digest: dict[str, Partner] = {}
        for p in partners:
            for digest in p.api_key_sha256:
                d = digest.strip().lower()
                if not _DIGEST.fullmatch(d):
                    raise ValueError(f"partner {p.id!r}: api key digest is not 64 hex characters")
                other = self._by_digest.get(d)
                if other is not None and other.id != p.id:
                    raise ValueError(f"partners {other.id!r} and {p.id!r} share an api key digest")
                self._by_digest[d] = p

    def authenticate(self, key: str) -> Partner | None:
        """The partner owning ``key``, or None."""
        digest = hash_key(key)
        partner = self._by_digest.get(digest)
        expected = digest if partner is not None else _NO_MATCH
        if hmac.compare_digest(digest, expected) and partner is not None:
            return partner
        return None


def _read_key(stream: TextIO) -> str:
    if stream.isatty():
        return getpass.getpass("API key: ")  # no echo
    return stream.readline().rstrip("\r\n")


def cli_main(argv: list[str]) -> int:
    """``loomgate hash-key [KEY]``: print the SHA-256 digest of an API key."""
    parser = argparse.ArgumentParser(
        prog="loomgate hash-key",
        description=(
            "Print the SHA-256 hex digest of an API key, for partners[].api_keys in the config. "
            "Without KEY the key is read from standard input (first line), which keeps it out of "
            "shell history."
        ),
    )
    parser.add_argument("key", nargs="?", help="the API key (prefer standard input)")
    args = parser.parse_args(argv)
    key = args.key if args.key is not None else _read_key(sys.stdin)
    if not key or key != key.strip():
        print("loomgate hash-key: the key is empty or has leading/trailing whitespace", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0
