"""Payment and email settings: optional, validated, named in the error."""

import pytest

from cinema.settings import SettingsError, load_settings
from tests.conftest import JWT_SECRET

BASE = {"jwt_secret": JWT_SECRET, "_env_file": None}


def test_payments_are_off_without_a_secret_key():
    settings = load_settings(**BASE)
    assert settings.payments_enabled is False
    assert settings.stripe_api_base == "https://api.stripe.com"
    assert settings.smtp_host == ""


def test_stripe_settings_are_read():
    settings = load_settings(
        **BASE,
        stripe_secret_key="sk_test_1",
        stripe_webhook_secret="whsec_1",
        stripe_api_base="http://127.0.0.1:8420/",
        smtp_host="127.0.0.1",
        smtp_port=1025,
    )
    assert settings.payments_enabled is True
    assert settings.stripe_api_base == "http://127.0.0.1:8420"
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 1025)


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"stripe_api_base": "ftp://stripe"}, "STRIPE_API_BASE"),
        ({"stripe_timeout_seconds": 0}, "STRIPE_TIMEOUT_SECONDS"),
        ({"smtp_port": 70000}, "SMTP_PORT"),
    ],
)
def test_bad_values_name_the_variable(override, name):
    with pytest.raises(SettingsError, match=name):
        load_settings(**BASE, **override)
