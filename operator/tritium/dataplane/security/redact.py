"""Redaction of personal data (spec.security.redactPII) in every gateway log line and audit record.

A logging.Filter on the handlers (root's and the audit log's): the message is formatted, then
each pattern's matches are replaced by a tag ("[email]", "[card]"...). Numbers are only taken
for personal data when they have the shape and the check digits of one: a card number must have
an issuer's prefix, a card length and a valid Luhn sum; an IBAN a country code and mod-97 == 1;
an IP address must parse; a phone number needs a leading + or the (NNN) NNN-NNNN shape. So
counters, ids, UUIDs, timestamps and latencies are left alone. Answers are redacted with the same
Redactor only when spec.security.redactResponses asks (redact_response.py).
"""

from __future__ import annotations

import io
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from typing import TextIO

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
                    r"|\(\d{3}\) ?\d{3}[ .-]\d{4})(?![\w-])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer(digits: str) -> bool:
    """Prefix and length of a payment card (Visa, Mastercard, Amex, Discover, JCB, Diners)."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return ((digits[0] == "4" and n in (13, 16, 19)) or (51 <= two <= 55 and n == 16)
            or (2221 <= four <= 2720 and n == 16) or (two in (34, 37) and n == 15)
            or ((four == 6011 or two == 65) and n in (16, 19)) or (two == 35 and n in (16, 19))
            or (two in (30, 36, 38) and n == 14))


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and _card_issuer(digits) and luhn_ok(digits)


def iban_ok(text: str) -> bool:
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone(text: str) -> bool:
    return 7 <= sum(c.isdigit() for c in text) <= 15


# (pattern, tag, check): in this order, so an e-mail's digits or an IBAN are never half-taken as phones.
_BUILTIN: tuple[tuple[re.Pattern[str], str, Callable[[str], bool] | None], ...] = (
    (_EMAIL, "[email]", None),
    (_IBAN, "[iban]", iban_ok),
    (_CARD, "[card]", _card),
    (_IPV4, "[ip]", _ip),
    (_IPV6, "[ip]", lambda s: ":" in s and any(c.isalnum() for c in s) and _ip(s)),
    (_PHONE, "[phone]", _phone),
)


class Redactor:
    """The built-in patterns, then the spec's own (redactPatterns, tag "[redacted]")."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.rules = [*_BUILTIN, *((re.compile(p), "[redacted]", None) for p in extra)]

    def __call__(self, text: str) -> str:
        for pattern, tag, check in self.rules:
            if check is None:
                text = pattern.sub(tag, text)
            else:
                text = pattern.sub(lambda m, c=check, t=tag: t if c(m.group(0)) else m.group(0), text)
        return text


class RedactingFilter(logging.Filter):
    """Redacts a record's formatted message (and a traceback's text) before any handler writes it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redactor(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before they reach ``target``: what a stage's script
    prints or logs (a stage runs user code, which may print what it was sent). A line is written
    once its newline arrives, or on flush, so a pattern is never split across two writes."""

    def __init__(self, target: TextIO, redactor: Redactor) -> None:
        super().__init__()
        self.target = target
        self.redactor = redactor
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if lines:
            self.target.write("".join(self.redactor(line) + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.target.write(self.redactor(self._pending))
            self._pending = ""
        self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")
