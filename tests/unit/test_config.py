"""Settings come from PATCHBAY_* variables (nested with __) and an optional TOML file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from patchbay.config import Settings


def test_defaults_bind_to_loopback_on_the_documented_ports(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert (settings.core.host, settings.core.port) == ("127.0.0.1", 8700)
    assert (settings.openai.host, settings.openai.port) == ("127.0.0.1", 11435)
    assert settings.core.base_url == "http://127.0.0.1:8700"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'patchbay.db'}"
    assert settings.llm_log_path == tmp_path / "logs.db"


def test_environment_overrides_nested_sections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATCHBAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PATCHBAY_CORE__PORT", "9100")
    monkeypatch.setenv("PATCHBAY_JOBS__MAX_DEPTH", "7")
    monkeypatch.setenv("PATCHBAY_CHANNELS__SMS__GATEWAY_URL", "http://gw")
    monkeypatch.setenv("PATCHBAY_SOMETHING_UNKNOWN", "ignored")
    settings = Settings()
    assert settings.core.port == 9100
    assert settings.jobs.max_depth == 7
    assert settings.channels == {"sms": {"gateway_url": "http://gw"}}


def test_toml_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "custom.toml"
    config.write_text(
        'database_url = "postgresql+asyncpg://db/x"\n[openai]\nport = 12000\nhost = "0.0.0.0"\n'
    )
    monkeypatch.setenv("PATCHBAY_CONFIG", str(config))
    monkeypatch.setenv("PATCHBAY_OPENAI__PORT", "12001")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://db/x"
    assert (settings.openai.host, settings.openai.port) == ("0.0.0.0", 12001)  # noqa: S104


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_CORE__PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


def test_the_installation_secret_is_created_once_and_private(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    first = settings.installation_secret()
    assert settings.installation_secret() == first and len(first) > 40
    assert stat.S_IMODE((tmp_path / "data" / "secret_key").stat().st_mode) == 0o600
    given = Settings(_env_file=None, data_dir=tmp_path, secret_key="set")
    assert given.installation_secret() == "set"


def test_up_runs_the_built_in_channels_that_are_enabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from patchbay.supervisor.modules import modules

    monkeypatch.setenv("PATCHBAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PATCHBAY_HELPERS__BUILTIN", "[]")
    everything = [spec.name for spec in modules(Settings())]
    assert everything == ["core", "openai", "ws", "web"]
    monkeypatch.setenv("PATCHBAY_WS__ENABLED", "false")
    monkeypatch.setenv("PATCHBAY_WEB__ENABLED", "0")
    assert [spec.name for spec in modules(Settings())] == ["core", "openai"]
    monkeypatch.setenv("PATCHBAY_OPENAI__ENABLED", "false")
    assert [spec.name for spec in modules(Settings())] == ["core"]


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).core.trusted_proxies == []  # no proxy is believed
    monkeypatch.setenv("PATCHBAY_CORE__TRUSTED_PROXIES", '["127.0.0.1", "fd00::/8"]')
    proxies = Settings(_env_file=None).core.trusted_proxies
    assert [str(p) for p in proxies] == ["127.0.0.1/32", "fd00::/8"]
    monkeypatch.setenv("PATCHBAY_CORE__TRUSTED_PROXIES", '["proxy.internal"]')
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
