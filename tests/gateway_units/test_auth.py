"""API key extraction, key ring lookups and the hash-key command."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pytest
from multidict import CIMultiDict

from gateway.auth import KeyRing, cli_main, extract_key, hash_key
from gateway.config import Partner


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("k1") == hashlib.sha256(b"k1").hexdigest()
    assert hash_key("clé") == hashlib.sha256("clé".encode()).hexdigest()
    assert len(hash_key("")) == 64


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("Authorization", "Bearer abc123")], "abc123"),
        ([("authorization", "bearer abc123")], "abc123"),
        ([("Authorization", "BEARER   abc123  ")], "abc123"),
        ([("X-Api-Key", "xyz")], "xyz"),
        ([("x-api-key", "  xyz ")], "xyz"),
        ([("Authorization", "Bearer abc"), ("X-Api-Key", "xyz")], "abc"),
        ([("Authorization", "Basic dXNlcjpwYXNz"), ("X-Api-Key", "xyz")], "xyz"),
        ([("Authorization", "Basic dXNlcjpwYXNz")], None),
        ([("Authorization", "Bearer")], None),
        ([("Authorization", "Bearer ")], None),
        ([("Authorization", "Bearer a b")], None),
        ([("Authorization", "Bearerabc")], None),
        ([("X-Api-Key", "")], None),
        ([("X-Api-Key", "a b")], None),
        ([], None),
    ],
)
def test_extract_key(pairs: list[tuple[str, str]], expected: str | None) -> None:
    assert extract_key(CIMultiDict(pairs)) == expected


def _partners() -> list[Partner]:
    return [
        Partner(id="shopco", api_key_sha256=(hash_key("shop-key-1"), hash_key("shop-key-2").upper())),
        Partner(id="posco", api_key_sha256=(hash_key("pos-key"),), artisans=("a1", "a2")),
    ]


def test_keyring_authenticates_each_key() -> None:
    ring = KeyRing(_partners())
    assert ring.authenticate("shop-key-1").id == "shopco"
    assert ring.authenticate("shop-key-2").id == "shopco"  # stored digest in uppercase still works
    assert ring.authenticate("pos-key").id == "posco"


@pytest.mark.parametrize(
    "key", ["", "shop-key-", "shop-key-1 ", "SHOP-KEY-1", "pos-key\n", hash_key("pos-key")]
)
def test_keyring_rejects_unknown(key: str) -> None:
    assert KeyRing(_partners()).authenticate(key) is None


def test_keyring_rejects_bad_digests() -> None:
    with pytest.raises(ValueError, match="64 hex"):
        KeyRing([Partner(id="p", api_key_sha256=("not-a-digest",))])
    with pytest.raises(ValueError, match="share"):
        same = (hash_key("k"),)
        KeyRing([Partner(id="a", api_key_sha256=same), Partner(id="b", api_key_sha256=same)])


def test_keyring_does_not_hold_raw_keys() -> None:
    ring = KeyRing(_partners())
    assert "shop-key-1" not in repr(vars(ring))


def test_cli_with_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["s3cret"]) == 0
    assert capsys.readouterr().out.strip() == hashlib.sha256(b"s3cret").hexdigest()


def test_cli_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\nignored\n"))
    assert cli_main([]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == hashlib.sha256(b"from-stdin").hexdigest()
    assert "from-stdin" not in out.out + out.err


@pytest.mark.parametrize("stdin", ["", "\n", " padded \n"])
def test_cli_rejects_empty_or_padded(
    stdin: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert cli_main([]) == 2
    assert "empty" in capsys.readouterr().err


def test_cli_through_console_dispatcher() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "hash-key"],
        input="piped-key\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == hashlib.sha256(b"piped-key").hexdigest()
