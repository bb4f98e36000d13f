"""Start-up refuses a JWT_SECRET anyone could know: .env.example's placeholder, or a key too
predictable to sign tokens with. One clear line, exit code 2, like every bad setting."""

import re
import secrets
from pathlib import Path

import pytest

from cinema.settings import SettingsError, load_settings
from tests.test_cli import cinema

ROOT = Path(__file__).resolve().parent.parent


def _example_secret() -> str:
    text = (ROOT / ".env.example").read_text()
    match = re.search(r"^JWT_SECRET=(.*)$", text, re.MULTILINE)
    assert match, "the example file documents JWT_SECRET"
    return match.group(1)


def test_the_example_files_placeholder_is_refused_at_start_up_in_one_line():
    placeholder = _example_secret()
    assert len(placeholder) >= 32  # it passes the length check: that was the trap
    result = cinema("serve", JWT_SECRET=placeholder)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: JWT_SECRET: is a placeholder"), lines


@pytest.mark.parametrize(
    "secret",
    [
        "change-me-to-a-long-random-string-of-32+-chars",
        "CHANGEME" + secrets.token_hex(16),
        "your-secret-key-" + secrets.token_hex(16),
        "replace_me_" + secrets.token_hex(16),
    ],
)
def test_placeholders_are_refused(secret):
    with pytest.raises(SettingsError, match=r"^configuration error: JWT_SECRET: is a placeholder"):
        load_settings(jwt_secret=secret, _env_file=None)


@pytest.mark.parametrize(
    "secret",
    ["x" * 32, "ab" * 20, "test-secret-" + "x" * 32, "0123456789abcdef" * 2, "aaaabbbb" * 5],
)
def test_low_entropy_secrets_are_refused(secret):
    with pytest.raises(SettingsError) as caught:
        load_settings(jwt_secret=secret, _env_file=None)
    message = str(caught.value)
    assert message.startswith("configuration error: JWT_SECRET: is too predictable"), message
    assert "\n" not in message


def test_short_secrets_still_name_the_length():
    with pytest.raises(SettingsError, match="JWT_SECRET: must have at least 32 characters"):
        load_settings(jwt_secret=secrets.token_hex(8), _env_file=None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(16),
        lambda: secrets.token_urlsafe(24),
        lambda: secrets.token_urlsafe(48),
    ],
)
def test_generated_secrets_pass(make):
    for _ in range(200):
        secret = make()
        assert load_settings(jwt_secret=secret, _env_file=None).jwt_secret == secret
