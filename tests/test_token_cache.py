"""TokenIssuer keeps verified tokens per process; a cached token must still expire on time and
a forged one must never be answered from the cache."""

from __future__ import annotations

import time

import jwt
import pytest

from cinema.auth import tokens
from cinema.auth.errors import InvalidToken
from cinema.auth.tokens import Principal, TokenIssuer

SECRET = "s" * 40


def test_a_cached_token_still_expires() -> None:
    issuer = TokenIssuer(SECRET, 1)
    token = issuer.issue(Principal(7, False))
    assert issuer.verify(token) == Principal(7, False)
    assert issuer.verify(token) == Principal(7, False)  # now from the cache
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    while time.time() < expires + 0.05:  # the clock passing `exp`, nothing else to wait for
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token)


def test_a_tampered_token_is_rejected_after_the_real_one_was_cached() -> None:
    issuer = TokenIssuer(SECRET, 60)
    token = issuer.issue(Principal(7, True))
    issuer.verify(token)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(InvalidToken):
        issuer.verify(forged)
    other = TokenIssuer("o" * 40, 60)
    with pytest.raises(InvalidToken):
        other.verify(token)  # another secret, another cache


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    issuer = TokenIssuer(SECRET, 60)
    issued = [issuer.issue(Principal(n, False)) for n in range(1, 6)]
    for token in issued:
        issuer.verify(token)
    assert len(issuer._verified) == 3
    assert all(issuer.verify(t).user_id == n for n, t in enumerate(issued, start=1))
