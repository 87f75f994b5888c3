"""Typed, validated settings: the only module that reads the environment.

Every variable is parsed once by :func:`load_settings`. An invalid value raises
:class:`ConfigError` with the variable, the value and the expected form, and
startup stops there. WUZAPI timings are milliseconds; session timings are seconds.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from .logs import LOG_FORMATS, LOG_LEVELS

RATELIMIT_IN_DATABASE = "database://"  # RATELIMIT_STORAGE_URI for counters in the session database

logger = logging.getLogger(__name__)

SECRET_MIN_LENGTH = 32
# Table names get suffixes such as "_circuit_events_name_id_idx" (27 characters), and
# PostgreSQL cuts identifiers at 63, so the base name is kept to 32 characters.
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
SUPABASE_PROJECT_HOST = re.compile(r"^([a-z0-9]{20})\.supabase\.co$")
# Tokens of `make demo` and the fake WUZAPI, which production must never accept.
DEMO_TOKENS = {"demo-admin-token", "demo-user-token", "fake-admin-token"}


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""

    def __init__(self, name: str, value: str, expected: str):
        if name in SECRET_VARIABLES:
            shown = "<hidden>"
        else:
            shown = re.sub(r"(://[^/:@\s]*:)[^@/\s]*@", r"\1***@", value)  # URL passwords
        super().__init__(f"invalid {name}={shown!r}: expected {expected}")
        self.name = name


SECRET_VARIABLES = {"SESSION_SECRET", "SECRET_KEY", "SESSION_SECRET_FALLBACKS",
                    "SUPABASE_DB_PASSWORD", "WUZAPI_ADMIN_TOKEN"}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service; see docs/configuration.md for each one."""

    env: str
    secret_key: str
    secret_fallbacks: tuple[str, ...]
    database_url: str | None
    database_via_pooler: bool
    sqlite_path: Path
    session_table: str
    session_cookie_name: str
    session_lifetime: int
    session_absolute_lifetime: int
    session_touch_interval: int
    session_prune_interval: int
    session_max_bytes: int
    cookie_secure: bool
    cookie_samesite: str
    cookie_domain: str | None
    db_pool_min: int
    db_pool_max: int
    db_pool_timeout: float
    db_statement_timeout_ms: int
    wuzapi_base_url: str
    wuzapi_admin_token: str | None
    wuzapi_connect_timeout_ms: int
    wuzapi_timeout_ms: int
    wuzapi_deadline_ms: int
    wuzapi_max_retries: int
    wuzapi_retry_initial_delay_ms: int
    wuzapi_retry_max_delay_ms: int
    wuzapi_retry_budget_percent: int
    wuzapi_retry_budget_min_per_second: int
    wuzapi_circuit_enabled: bool
    wuzapi_circuit_failure_threshold: int
    wuzapi_circuit_reset_timeout_ms: int
    wuzapi_circuit_success_threshold: int
    log_level: str
    log_format: str
    gunicorn_threads: int
    web_concurrency: int
    bind: str
    instance_path: Path = field(default=Path("instance"))
    login_rate_limit: str | None = "10 per minute"
    ratelimit_storage_uri: str = RATELIMIT_IN_DATABASE
    trusted_proxies: int = 0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def ratelimit_in_database(self) -> bool:
        """Whether the login counters live in the session database (and are pruned with it)."""
        return self.ratelimit_storage_uri == RATELIMIT_IN_DATABASE

    @property
    def database_backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    def to_flask(self) -> dict:
        """Map the settings onto the Flask configuration keys Flask reads itself."""
        return {
            "SECRET_KEY": self.secret_key,
            "SECRET_KEY_FALLBACKS": list(self.secret_fallbacks),
            "SESSION_COOKIE_NAME": self.session_cookie_name,
            "SESSION_COOKIE_SECURE": self.cookie_secure,
            "SESSION_COOKIE_SAMESITE": self.cookie_samesite,
            "SESSION_COOKIE_DOMAIN": self.cookie_domain,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_REFRESH_EACH_REQUEST": False,
            "PERMANENT_SESSION_LIFETIME": self.session_lifetime,
            "STABILIZER": self,
        }


class _Reader:
    """Parse variables from one environment mapping, naming the variable on error."""

    def __init__(self, environ: dict[str, str]):
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            number = int(value, 10)
        except ValueError:
            raise ConfigError(name, value, expected) from None
        if number < minimum or (maximum is not None and number > maximum):
            raise ConfigError(name, value, expected)
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(name, value, "true or false (also 1/0, yes/no, on/off)")

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, fold_case: bool = True) -> str:
        value = self.raw(name)
        if value is None:
            return default
        candidate = value.lower() if fold_case else value
        for option in choices:
            if candidate == (option.lower() if fold_case else option):
                return option
        raise ConfigError(name, value, "one of " + ", ".join(choices))


def load_settings(environ: dict[str, str] | None = None, instance_path: Path | str = "instance") -> Settings:
    """Read and validate every variable; raise ConfigError on the first invalid one."""
    if environ is None:
        _load_dotenv()
        environ = dict(os.environ)
    read = _Reader(environ)
    instance = Path(instance_path)

    env = read.choice("STABILIZER_ENV", "development", ("development", "production", "test"))
    production = env == "production"

    database_url, via_pooler = _database_url(read)
    secret_key = _secret_key(read, production, instance)
    fallbacks = tuple(
        part.strip() for part in (read.raw("SESSION_SECRET_FALLBACKS") or "").split(",") if part.strip()
    )
    for previous in fallbacks:
        if len(previous) < SECRET_MIN_LENGTH:
            raise ConfigError("SESSION_SECRET_FALLBACKS", previous,
                              f"comma-separated secrets of at least {SECRET_MIN_LENGTH} characters each")

    session_table = read.text("SESSION_TABLE", "user_sessions")
    if not IDENTIFIER.match(session_table):
        raise ConfigError("SESSION_TABLE", session_table,
                          "a lowercase SQL identifier (letters, digits, underscore; at most 32 characters)")
    cookie_name = read.text("SESSION_COOKIE_NAME", "wuzapi.sid")
    if not re.match(r"^[A-Za-z0-9._-]{1,64}$", cookie_name):
        raise ConfigError("SESSION_COOKIE_NAME", cookie_name, "1-64 characters among letters, digits, '.', '_' and '-'")

    session_lifetime = read.integer("SESSION_LIFETIME", 86400, minimum=60)
    absolute_lifetime = read.integer("SESSION_ABSOLUTE_LIFETIME", 604800, minimum=60)
    if absolute_lifetime < session_lifetime:
        raise ConfigError("SESSION_ABSOLUTE_LIFETIME", str(absolute_lifetime),
                          f"a number of seconds >= SESSION_LIFETIME ({session_lifetime})")
    touch_interval = read.integer("SESSION_TOUCH_INTERVAL", 300, minimum=0)
    if touch_interval >= session_lifetime:
        raise ConfigError("SESSION_TOUCH_INTERVAL", str(touch_interval),
                          f"a number of seconds < SESSION_LIFETIME ({session_lifetime})")

    samesite = read.choice("COOKIE_SAMESITE", "Lax", ("Lax", "Strict", "None"))
    cookie_secure = read.boolean("COOKIE_SECURE", False)
    if samesite == "None" and not cookie_secure:
        raise ConfigError("COOKIE_SAMESITE", "None", "Lax or Strict unless COOKIE_SECURE=true "
                          "(browsers drop SameSite=None cookies without Secure)")

    pool_min = read.integer("DB_POOL_MIN", 1, minimum=0)
    pool_max = read.integer("DB_POOL_MAX", 10, minimum=1)
    if pool_max < pool_min:
        raise ConfigError("DB_POOL_MAX", str(pool_max), f"an integer >= DB_POOL_MIN ({pool_min})")

    base_url = read.text("WUZAPI_BASE_URL", "http://localhost:8080").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError("WUZAPI_BASE_URL", base_url, "an http:// or https:// URL such as http://localhost:8080")

    admin_token = read.raw("WUZAPI_ADMIN_TOKEN")
    if production and admin_token in DEMO_TOKENS:
        raise ConfigError("WUZAPI_ADMIN_TOKEN", admin_token,
                          "the admin token of your WUZAPI server, not a demo value, when STABILIZER_ENV=production")
    connect_timeout = read.integer("WUZAPI_CONNECT_TIMEOUT", 3000, minimum=1)
    read_timeout = read.integer("WUZAPI_TIMEOUT", 10000, minimum=1)
    deadline = read.integer("WUZAPI_DEADLINE", 20000, minimum=1)
    initial_delay = read.integer("WUZAPI_RETRY_INITIAL_DELAY", 1000, minimum=0)
    max_delay = read.integer("WUZAPI_RETRY_MAX_DELAY", 10000, minimum=0)
    if max_delay < initial_delay:
        raise ConfigError("WUZAPI_RETRY_MAX_DELAY", str(max_delay),
                          f"milliseconds >= WUZAPI_RETRY_INITIAL_DELAY ({initial_delay})")

    return Settings(
        env=env,
        secret_key=secret_key,
        secret_fallbacks=fallbacks,
        database_url=database_url,
        database_via_pooler=via_pooler,
        sqlite_path=Path(read.text("SQLITE_PATH", str(instance / "stabilizer.sqlite3"))),
        session_table=session_table,
        session_cookie_name=cookie_name,
        session_lifetime=session_lifetime,
        session_absolute_lifetime=absolute_lifetime,
        session_touch_interval=touch_interval,
        session_prune_interval=read.integer("SESSION_PRUNE_INTERVAL", 900, minimum=0),
        session_max_bytes=read.integer("SESSION_MAX_BYTES", 65536, minimum=1024),
        cookie_secure=cookie_secure,
        cookie_samesite=samesite,
        cookie_domain=read.raw("COOKIE_DOMAIN"),
        db_pool_min=pool_min,
        db_pool_max=pool_max,
        db_pool_timeout=float(read.integer("DB_POOL_TIMEOUT", 5, minimum=1)),
        db_statement_timeout_ms=read.integer("DB_STATEMENT_TIMEOUT", 5000, minimum=0),
        wuzapi_base_url=base_url,
        wuzapi_admin_token=admin_token,
        wuzapi_connect_timeout_ms=connect_timeout,
        wuzapi_timeout_ms=read_timeout,
        wuzapi_deadline_ms=deadline,
        wuzapi_max_retries=read.integer("WUZAPI_MAX_RETRIES", 3, minimum=0, maximum=20),
        wuzapi_retry_initial_delay_ms=initial_delay,
        wuzapi_retry_max_delay_ms=max_delay,
        wuzapi_retry_budget_percent=read.integer("WUZAPI_RETRY_BUDGET_PERCENT", 20, minimum=0, maximum=100),
        wuzapi_retry_budget_min_per_second=read.integer("WUZAPI_RETRY_BUDGET_MIN_PER_SECOND", 10, minimum=0),
        wuzapi_circuit_enabled=read.boolean("WUZAPI_CIRCUIT_ENABLED", True),
        wuzapi_circuit_failure_threshold=read.integer("WUZAPI_CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1),
        wuzapi_circuit_reset_timeout_ms=read.integer("WUZAPI_CIRCUIT_RESET_TIMEOUT", 30000, minimum=1),
        wuzapi_circuit_success_threshold=read.integer("WUZAPI_CIRCUIT_SUCCESS_THRESHOLD", 2, minimum=1),
        log_level=read.choice("LOG_LEVEL", "info", LOG_LEVELS),
        log_format=read.choice("LOG_FORMAT", "json", LOG_FORMATS),
        gunicorn_threads=read.integer("GUNICORN_THREADS", 4, minimum=1, maximum=256),
        web_concurrency=read.integer("WEB_CONCURRENCY", 2, minimum=1, maximum=64),
        bind=_bind(read),
        instance_path=instance,
        login_rate_limit=_login_rate_limit(read),
        ratelimit_storage_uri=_ratelimit_storage_uri(read),
        trusted_proxies=read.integer("TRUSTED_PROXIES", 0, minimum=0, maximum=5),
    )


def _login_rate_limit(read: _Reader) -> str | None:
    """Return LOGIN_RATE_LIMIT as a rate limit string for Flask-Limiter, or None for ``0`` (no limit)."""
    from limits import parse_many

    value = read.text("LOGIN_RATE_LIMIT", "10 per minute")
    if value == "0":
        return None
    expected = "rate limits such as '10 per minute' or '10/minute;100/hour' (each amount >= 1), or 0 to disable"
    try:
        limits = parse_many(value)
    except ValueError:
        raise ConfigError("LOGIN_RATE_LIMIT", value, expected) from None
    if not limits or any(limit.amount < 1 for limit in limits):
        raise ConfigError("LOGIN_RATE_LIMIT", value, expected)
    return value


def _ratelimit_storage_uri(read: _Reader) -> str:
    """Return RATELIMIT_STORAGE_URI after checking that the limits package knows its scheme.

    ``database://`` (the default) keeps the counters in the session database.
    """
    from limits.storage import SCHEMES

    value = read.text("RATELIMIT_STORAGE_URI", RATELIMIT_IN_DATABASE)
    if value == RATELIMIT_IN_DATABASE:
        return value
    scheme, separator, _ = value.partition("://")
    if not separator or scheme not in SCHEMES or scheme == "database" or scheme.startswith("async+"):
        raise ConfigError("RATELIMIT_STORAGE_URI", value,
                          "database://, or a storage URI such as memory://, redis://host:6379"
                          " or memcached://host:11211")
    return value


def _bind(read: _Reader) -> str:
    value = read.text("BIND", "127.0.0.1:8000")
    for part in value.split(","):
        part = part.strip()
        if part.startswith("unix:"):
            continue
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("BIND", value, "HOST:PORT such as 127.0.0.1:8000 or [::1]:8000, or unix:PATH")
    return value


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:
        return
    load_dotenv(override=False)


def _secret_key(read: _Reader, production: bool, instance: Path) -> str:
    """Return SESSION_SECRET (or SECRET_KEY); outside production, generate one into the instance folder."""
    for name in ("SESSION_SECRET", "SECRET_KEY"):
        value = read.raw(name)
        if value is None:
            continue
        if len(value) < SECRET_MIN_LENGTH:
            raise ConfigError(name, value, f"a random string of at least {SECRET_MIN_LENGTH} characters")
        return value
    if production:
        raise ConfigError("SESSION_SECRET", "", "a random string of at least 32 characters "
                          "(required when STABILIZER_ENV=production), e.g. from: "
                          "python -c 'import secrets; print(secrets.token_urlsafe(48))'")
    return _instance_secret(instance)


def _instance_secret(instance: Path) -> str:
    """Return the development secret in ``instance/secret_key``, generating it on first use."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        # O_EXCL makes concurrent first starts (several workers) agree on one secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
            logger.warning("SESSION_SECRET is not set: generated a development secret in %s; "
                           "set SESSION_SECRET in production", path)
            return value

    # Another process may have created the file a moment ago and still be writing it.
    for _ in range(20):
        value = path.read_text().strip()
        if len(value) >= SECRET_MIN_LENGTH:
            return value
        time.sleep(0.05)
    raise ConfigError("SESSION_SECRET", "", f"a secret of at least {SECRET_MIN_LENGTH} characters: {path} "
                      "holds a shorter one; delete that file to generate a new secret, or set SESSION_SECRET")


def _database_url(read: _Reader) -> tuple[str | None, bool]:
    """Return the PostgreSQL URL and whether it goes through a transaction-mode pooler."""
    url = read.raw("DATABASE_URL")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql"} or not (parts.hostname or parts.path.strip("/")):
            raise ConfigError("DATABASE_URL", url, "a PostgreSQL URL such as postgresql://user:password@host:5432/dbname")
        pooler = read.choice("DATABASE_TRANSACTION_POOLER", "auto", ("auto", "true", "false"))
        # Port 6543 is Supabase's transaction-mode pooler; pgbouncer elsewhere needs "true".
        via_pooler = parts.port == 6543 if pooler == "auto" else pooler == "true"
        return url, via_pooler

    project_url = read.raw("SUPABASE_URL")
    if project_url is None:
        return None, False
    host = urlsplit(project_url).hostname or ""
    match = SUPABASE_PROJECT_HOST.match(host)
    if not match:
        raise ConfigError("SUPABASE_URL", project_url, "the project URL https://<project-ref>.supabase.co")
    password = read.raw("SUPABASE_DB_PASSWORD")
    if password is None:
        raise ConfigError("SUPABASE_DB_PASSWORD", "", "the database password, required with SUPABASE_URL")
    region = read.text("SUPABASE_REGION", "us-east-1")
    if not re.match(r"^[a-z]{2}-[a-z]+-\d$", region):
        raise ConfigError("SUPABASE_REGION", region, "an AWS region name such as us-east-1 or sa-east-1")
    pooler_host = read.text("SUPABASE_POOLER_HOST", f"aws-0-{region}.pooler.supabase.com")
    project_ref = match.group(1)
    url = (f"postgresql://postgres.{project_ref}:{quote(password, safe='')}@{pooler_host}:6543/postgres"
           "?sslmode=require")
    return url, True
