"""The private decoded copy of a compressed request body: codings undone in order, bounded after inflating."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gateway import errors
from gateway.request_body import content_codings, decoded_copy

DOC = b'{"order": {"artisan_id": "a1"}}'


def test_codings_are_read_from_every_header_in_order() -> None:
    assert content_codings(["gzip, Deflate", " identity "]) == ["gzip", "deflate", "identity"]


@pytest.mark.parametrize(
    ("body", "codings"),
    [
        (gzip.compress(DOC), ["gzip"]),
        (gzip.compress(DOC), ["x-gzip"]),
        (zlib.compress(DOC), ["deflate"]),
        (zlib.compress(DOC)[2:-4], ["deflate"]),  # raw deflate, as some clients send it
        (zlib.compress(gzip.compress(DOC)), ["gzip", "deflate"]),
        (gzip.compress(DOC[:10]) + gzip.compress(DOC[10:]), ["gzip"]),  # two gzip members
        (DOC, ["identity"]),
    ],
)
def test_decoded_copy_undoes_each_coding(body: bytes, codings: list[str]) -> None:
    assert decoded_copy(body, codings, 1024) == DOC


def test_the_limit_counts_decompressed_bytes() -> None:
    assert decoded_copy(gzip.compress(DOC), ["gzip"], len(DOC)) == DOC
    with pytest.raises(errors.PayloadTooLarge):
        decoded_copy(gzip.compress(DOC), ["gzip"], len(DOC) - 1)
    with pytest.raises(errors.PayloadTooLarge):
        decoded_copy(gzip.compress(bytes(50 << 20)), ["gzip"], 64 * 1024)


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(DOC)[:-12]])
def test_broken_or_truncated_data_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(errors.BadRequest) as info:
        decoded_copy(body, ["gzip"], 1024)
    assert info.value.status == 400 and "gzip" in info.value.message


@pytest.mark.parametrize("coding", ["br", "zstd", "compress"])
def test_unknown_codings_are_415(coding: str) -> None:
    with pytest.raises(errors.UnsupportedEncoding) as info:
        decoded_copy(b"\x00\x01", [coding], 1024)
    assert info.value.status == 415 and coding in info.value.message
