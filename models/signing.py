"""Authenticated klines: an HMAC-SHA256 signature on every ``klines.1h`` record, in a Kafka header.

Every publisher of ``klines.1h`` (the ingestor, ``publish_klines``, the demo, the tests' producers) signs the
record with the secret ``KLINESTREAM_KLINE_SIGNING_KEY``; the stream verifies it before it parses anything
and dead-letters a record whose signature is missing (``unsigned``) or wrong (``bad_signature``).

What is signed: a version tag, the record key (length-prefixed, so key and value cannot be re-split) and the
value **bytes as published** — :meth:`models.kline.Kline.to_json` is the canonical form (compact separators,
contract field order), so the verifier needs no re-serialisation and any changed byte breaks the signature.
The signature is the lowercase hex digest in the header :data:`SIGNATURE_HEADER`.

The secret never leaves this object: it is not in ``repr`` and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "klinestream.sig"
_CONTEXT = b"klinestream/klines/v1\x00"
#: A shorter secret is refused at start-up (HMAC-SHA256 wants at least 128 bits of key).
MIN_SECRET_BYTES = 16


class KlineSigner:
    """Signs and verifies ``klines.1h`` records with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a kline signing key needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "KlineSigner(<secret>)"

    def signature(self, key: bytes | None, value: bytes) -> bytes:
        """The hex signature of a record with ``key`` (None: no key) and ``value``."""
        key_part = b"\xff\xff\xff\xff" if key is None else len(key).to_bytes(4, "big") + key
        return hmac.new(self._secret, _CONTEXT + key_part + value, hashlib.sha256).hexdigest().encode()

    def headers(self, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        """The Kafka headers that authenticate a record."""
        return [(SIGNATURE_HEADER, self.signature(key, value))]

    def verify(self, key: bytes | None, value: bytes, headers: Iterable[tuple[str, bytes | None]]) -> str | None:
        """None when the record carries exactly one valid signature, else the reason code
        (``unsigned`` or ``bad_signature``) and nothing about the expected value."""
        found = [v for name, v in headers if name == SIGNATURE_HEADER]
        if not found:
            return "unsigned"
        if len(found) > 1 or found[0] is None:
            return "bad_signature"
        return None if hmac.compare_digest(found[0], self.signature(key, value)) else "bad_signature"


def signer_from_secret(secret: str | None) -> KlineSigner | None:
    """A signer for a configured secret (``None`` or empty: signing off)."""
    return KlineSigner(secret.encode()) if secret else None
