"""Settings: defaults, environment over ``.env``, validation, and a repr that never shows the key."""

import os
from datetime import date
from pathlib import Path

import pytest

from stash_pipeline.settings import Settings, _system_timezone, load_env_file, parse_env_file


def test_defaults_with_empty_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=tmp_path / "absent.env")
    # Schedules default to the machine's own zone ("03:00 server time").
    assert settings == Settings(schedule_timezone=_system_timezone())
    assert settings.stash_url == "http://127.0.0.1:9999"
    assert settings.api_key is None
    assert settings.db_path == "data/stash.duckdb"
    assert (settings.page_size, settings.timeout, settings.retries) == (1000, 30.0, None)
    assert settings.retry_seconds == 300.0
    assert settings.overlap_seconds == 3600
    assert settings.partition_start == date(2019, 1, 1)
    assert settings.max_delete_fraction == 0.05


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        "export STASH_URL=http://stash.local:9999/\n"
        "STASH_API_KEY='from-file-key'\n"
        'STASH_PIPELINE_DB="/tmp/x.duckdb"\n'
        "STASH_PAGE_SIZE=250  # trailing comment\n"
        "STASH_RETRIES=2\n"
        "garbage line without equals\n",
        encoding="utf-8",
    )
    assert parse_env_file(env_file)["STASH_API_KEY"] == "from-file-key"
    settings = Settings.from_env({"STASH_RETRIES": "7", "STASH_PARTITION_START": "2021-06-01"}, env_file)
    assert settings.stash_url == "http://stash.local:9999"  # trailing slash removed
    assert settings.api_key == "from-file-key"
    assert settings.db_path == "/tmp/x.duckdb"
    assert settings.page_size == 250
    assert settings.retries == 7  # the environment wins over .env
    assert settings.partition_start == date(2021, 6, 1)


def test_repr_and_str_hide_the_key() -> None:
    secret = "s3cr3t-api-key-value"
    settings = Settings.from_env({"STASH_API_KEY": secret}, env_file=None)
    assert settings.api_key == secret
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert secret not in text
        assert "api_key='***'" in text
    assert "api_key=None" in repr(Settings())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STASH_PAGE_SIZE", "0"),
        ("STASH_PAGE_SIZE", "many"),
        ("STASH_TIMEOUT", "-1"),
        ("STASH_RETRIES", "-1"),
        ("STASH_MAX_DELETE_FRACTION", "1.5"),
        ("STASH_PARTITION_START", "2019/01/01"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value}, env_file=None)


def test_key_in_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="STASH_API_KEY") as info:
        Settings.from_env({"STASH_URL": "http://h:9999/?apikey=leaky"}, env_file=None)
    assert "leaky" not in str(info.value)


def test_load_env_file_fills_only_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STASH_TEST_ONLY_A=from-file\nSTASH_TEST_ONLY_B=from-file\n", encoding="utf-8")
    monkeypatch.delenv("STASH_TEST_ONLY_A", raising=False)
    monkeypatch.setenv("STASH_TEST_ONLY_B", "from-env")
    assert load_env_file(env_file) == ["STASH_TEST_ONLY_A"]
    assert os.environ["STASH_TEST_ONLY_A"] == "from-file"
    assert os.environ["STASH_TEST_ONLY_B"] == "from-env"
    monkeypatch.delenv("STASH_TEST_ONLY_A")
    assert load_env_file(tmp_path / "absent.env") == []


def test_schedule_timezone_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"STASH_SCHEDULE_TIMEZONE": "Australia/Sydney"}, env_file=tmp_path / "x")
    assert settings.schedule_timezone == "Australia/Sydney"
    assert Settings.from_env({"TZ": "America/New_York"}, env_file=tmp_path / "x").schedule_timezone == (
        "America/New_York"
    )
