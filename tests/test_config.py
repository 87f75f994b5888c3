"""Settings: validation messages, secrets, the Supabase pooler URL."""

from __future__ import annotations

import stat

import pytest

from stabilizer.config import ConfigError, load_settings


def _load(tmp_path, **environ):
    return load_settings(environ, instance_path=tmp_path / "instance")


@pytest.mark.parametrize("name, value, expected", [
    ("WUZAPI_MAX_RETRIES", "-1", "an integer >= 0"),
    ("WUZAPI_MAX_RETRIES", "three", "an integer >= 0"),
    ("WUZAPI_TIMEOUT", "0", "an integer >= 1"),
    ("SESSION_LIFETIME", "59", "an integer >= 60"),
    ("COOKIE_SECURE", "maybe", "true or false"),
    ("COOKIE_SAMESITE", "sideways", "one of Lax, Strict, None"),
    ("LOG_LEVEL", "loud", "one of debug, info, warning, error"),
    ("WUZAPI_BASE_URL", "ftp://host", "an http:// or https:// URL"),
    ("DATABASE_URL", "mysql://x/y", "a PostgreSQL URL"),
    ("SESSION_TABLE", "drop table;", "a lowercase SQL identifier"),
    ("BIND", "8000", "HOST:PORT"),
    ("STABILIZER_ENV", "staging", "one of development, production, test"),
])
def test_invalid_value_names_variable_value_and_form(tmp_path, name, value, expected):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, **{name: value})
    message = str(excinfo.value)
    assert message.startswith(f"invalid {name}=")
    assert repr(value) in message
    assert expected in message


def test_database_url_password_masked_in_error(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, DATABASE_URL="mysql://app:hunter2@db/app")
    assert "hunter2" not in str(excinfo.value)
    assert "mysql://app:***@db/app" in str(excinfo.value)


def test_zero_is_valid_where_meaningful(tmp_path):
    settings = _load(tmp_path, WUZAPI_MAX_RETRIES="0", SESSION_PRUNE_INTERVAL="0", WUZAPI_RETRY_INITIAL_DELAY="0",
                     SESSION_TOUCH_INTERVAL="0")
    assert settings.wuzapi_max_retries == 0
    assert settings.session_prune_interval == 0


def test_cross_field_checks(tmp_path):
    with pytest.raises(ConfigError, match="SESSION_ABSOLUTE_LIFETIME"):
        _load(tmp_path, SESSION_LIFETIME="3600", SESSION_ABSOLUTE_LIFETIME="60")
    with pytest.raises(ConfigError, match="SESSION_TOUCH_INTERVAL"):
        _load(tmp_path, SESSION_LIFETIME="300", SESSION_TOUCH_INTERVAL="300")
    with pytest.raises(ConfigError, match="WUZAPI_RETRY_MAX_DELAY"):
        _load(tmp_path, WUZAPI_RETRY_INITIAL_DELAY="2000", WUZAPI_RETRY_MAX_DELAY="1000")
    with pytest.raises(ConfigError, match="COOKIE_SAMESITE"):
        _load(tmp_path, COOKIE_SAMESITE="None")


def test_development_secret_generated_once_with_mode_0600(tmp_path, caplog):
    first = _load(tmp_path)
    path = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert any("generated a development secret" in record.getMessage() for record in caplog.records)
    assert _load(tmp_path).secret_key == first.secret_key


def test_short_instance_secret_is_an_error(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path)
    assert "secret_key" in str(excinfo.value)
    assert "delete that file" in str(excinfo.value)


def test_table_name_length_limit(tmp_path):
    assert _load(tmp_path, SESSION_TABLE="t" * 32).session_table == "t" * 32
    with pytest.raises(ConfigError, match="at most 32 characters"):
        _load(tmp_path, SESSION_TABLE="t" * 33)


def test_trusted_proxies_bounds(tmp_path):
    assert _load(tmp_path).trusted_proxies == 0
    assert _load(tmp_path, TRUSTED_PROXIES="2").trusted_proxies == 2
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        _load(tmp_path, TRUSTED_PROXIES="6")


def test_transaction_pooler_switch(tmp_path):
    url = "postgresql://u@db:5432/app"
    assert _load(tmp_path, DATABASE_URL=url).database_via_pooler is False
    assert _load(tmp_path, DATABASE_URL=url, DATABASE_TRANSACTION_POOLER="true").database_via_pooler is True
    assert _load(tmp_path, DATABASE_URL="postgresql://u@db:6543/app",
                 DATABASE_TRANSACTION_POOLER="false").database_via_pooler is False


def test_production_requires_secret(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, STABILIZER_ENV="production")
    assert "SESSION_SECRET" in str(excinfo.value)
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_production_refuses_demo_admin_token(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, STABILIZER_ENV="production", SESSION_SECRET="p" * 40, WUZAPI_ADMIN_TOKEN="demo-admin-token")
    assert "WUZAPI_ADMIN_TOKEN" in str(excinfo.value)
    assert "demo-admin-token" not in str(excinfo.value)  # secrets are never echoed
    settings = _load(tmp_path, STABILIZER_ENV="development", WUZAPI_ADMIN_TOKEN="demo-admin-token")
    assert settings.wuzapi_admin_token == "demo-admin-token"


def test_short_secret_rejected_and_hidden(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, SESSION_SECRET="short-secret")
    assert "short-secret" not in str(excinfo.value)
    assert "at least 32 characters" in str(excinfo.value)


def test_secret_key_alias(tmp_path):
    assert _load(tmp_path, SECRET_KEY="k" * 40).secret_key == "k" * 40


def test_supabase_builds_pooler_url(tmp_path):
    settings = _load(tmp_path, SUPABASE_URL="https://abcdefghijklmnopqrst.supabase.co",
                     SUPABASE_DB_PASSWORD="p@ss word", SUPABASE_REGION="sa-east-1")
    assert settings.database_url == ("postgresql://postgres.abcdefghijklmnopqrst:p%40ss%20word@"
                                     "aws-0-sa-east-1.pooler.supabase.com:6543/postgres?sslmode=require")
    assert settings.database_via_pooler is True


def test_supabase_pooler_host_override_and_errors(tmp_path):
    settings = _load(tmp_path, SUPABASE_URL="https://abcdefghijklmnopqrst.supabase.co", SUPABASE_DB_PASSWORD="x",
                     SUPABASE_POOLER_HOST="aws-1-us-east-1.pooler.supabase.com")
    assert "@aws-1-us-east-1.pooler.supabase.com:6543/" in settings.database_url
    with pytest.raises(ConfigError, match="SUPABASE_DB_PASSWORD"):
        _load(tmp_path, SUPABASE_URL="https://abcdefghijklmnopqrst.supabase.co")
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        _load(tmp_path, SUPABASE_URL="https://example.com", SUPABASE_DB_PASSWORD="x")


def test_database_url_wins_over_supabase(tmp_path):
    settings = _load(tmp_path, DATABASE_URL="postgresql://u@db:5432/app", SUPABASE_URL="https://x.supabase.co")
    assert settings.database_url == "postgresql://u@db:5432/app"
    assert settings.database_via_pooler is False
    assert _load(tmp_path, DATABASE_URL="postgresql://u@db:6543/app").database_via_pooler is True


def test_defaults(tmp_path):
    settings = _load(tmp_path)
    assert settings.database_backend == "sqlite"
    assert settings.session_cookie_name == "wuzapi.sid"
    assert settings.wuzapi_base_url == "http://localhost:8080"
    assert (settings.wuzapi_connect_timeout_ms, settings.wuzapi_timeout_ms, settings.wuzapi_deadline_ms) == \
        (3000, 10000, 20000)
    assert settings.bind == "127.0.0.1:8000"
