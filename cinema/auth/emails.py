"""The one normalisation of email addresses, for registration and login alike."""

from __future__ import annotations

import unicodedata

MAX_EMAIL_LENGTH = 254

# Control (Cc), format (Cf: bidi overrides, zero-width spaces, the BOM, soft hyphen),
# surrogate, private-use and unassigned code points, and every kind of space: characters a
# reader cannot see or that render as something else, the stuff of look-alike accounts.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class InvalidEmail(ValueError):
    """The message is short and meant for the client."""


def normalize_email(raw: str) -> str:
    """NFC, surrounding ASCII whitespace dropped, the domain in lower case; the local part keeps its
    case (it may matter to the mail server; uniqueness ignores case anyway). Real non-ASCII
    addresses stay allowed. Raises InvalidEmail."""
    email = unicodedata.normalize("NFC", raw.strip(" \t\r\n"))  # other spaces are refused
    if any(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in email):
        raise InvalidEmail("must not contain control, invisible or space characters")
    local, at, domain = email.rpartition("@")
    if not at or not local or "@" in local or not _plausible_domain(domain):
        raise InvalidEmail("must be an email address like name@example.com")
    # lower(), not casefold(): casefold turns "straße.de" into "strasse.de", another domain.
    email = f"{local}@{unicodedata.normalize('NFC', domain.lower())}"
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"must be at most {MAX_EMAIL_LENGTH} characters")
    return email


def _plausible_domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(labels) >= 2 and all(labels)
