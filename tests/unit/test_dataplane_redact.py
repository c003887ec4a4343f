"""PII redaction: each pattern's positives are redacted, ordinary numbers, ids, timestamps and UUIDs are not."""

from __future__ import annotations

import io
import logging

import pytest

from tritium.dataplane.security.redact import RedactingFilter, Redactor, iban_ok, luhn_ok

REDACT = Redactor()


@pytest.mark.parametrize(("text", "tag"), [
    ("alice.b+x@example.co.uk", "[email]"),
    ("bob@mail.example.org", "[email]"),
    ("+44 20 7946 0958", "[phone]"),
    ("+1-202-555-0143", "[phone]"),
    ("(555) 123-4567", "[phone]"),
    ("4111 1111 1111 1111", "[card]"),
    ("5500-0000-0000-0004", "[card]"),
    ("378282246310005", "[card]"),
    ("GB82 WEST 1234 5698 7654 32", "[iban]"),
    ("DE89370400440532013000", "[iban]"),
    ("192.168.1.20", "[ip]"),
    ("2001:db8::1", "[ip]"),
    ("fe80::1ff:fe23:4567:890a", "[ip]"),
])
def test_personal_data_is_redacted(text: str, tag: str) -> None:
    assert REDACT(f"user sent {text} today") == f"user sent {tag} today"


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # a card's shape, a wrong Luhn sum
    "1733212345678",  # a millisecond timestamp (Luhn may pass; no issuer starts 17)
    "GB82 WEST 1234 5698 7654 33",  # an IBAN's shape, a wrong check
    "999.1.1.1",  # not an address
    "2026-12-03T06:29:19.495Z",
    "12:30:45",
    "123e4567-e89b-12d3-a456-426614174000",
    "a08df95c1e2d3f4a5b6c7d8e9f0a1b2c",  # a request id
    "count 1234567 in 12.5 ms",
    "tritium_gateway_requests_total 1234567890123456",
    "version 1.2.3",
    "order 2024-01-15",
])
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert REDACT(text) == text


def test_check_digits() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")


def test_extra_patterns_from_the_spec() -> None:
    assert Redactor([r"cust-\d{6}"])("customer cust-123456 ok") == "customer [redacted] ok"


def test_the_filter_redacts_formatted_messages_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(REDACT))
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("from %s at %s", "carol@example.com", "10.1.2.3")
        try:
            raise ValueError("card 4111111111111111")
        except ValueError:
            log.exception("failed for dave@example.com")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "from [email] at [ip]" in text and "failed for [email]" in text and "card [card]" in text
    assert "example.com" not in text and "4111111111111111" not in text
