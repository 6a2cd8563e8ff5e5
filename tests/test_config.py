"""rsx.toml: finding it, its defaults, environment overrides and errors that name the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runtime.config import find_config, load_config, parse_config
from runtime.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("RSX_CONFIG", "RSX_DATABASE_URL", "RSX_SERVER_ID"):
        monkeypatch.delenv(variable, raising=False)


def write(folder: Path, text: str, name: str = "rsx.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_config_has_every_default_of_spec(tmp_path: Path) -> None:
    config = parse_config(write(tmp_path, ""))
    assert config.services == tmp_path / "services"
    assert config.output == tmp_path / "generated"
    assert config.storage == tmp_path / "storage"
    assert config.database_url == f"sqlite:///{tmp_path / 'storage' / 'tasks.db'}"
    assert (config.server_id, config.timezone, config.global_max_workers) == (1, "UTC", 1)
    assert (config.default_timeout, config.cleanup_stuck_after) == (1800, 1800)
    assert (config.temp_directory_default_ttl, config.task_retention_days) == (3600, 30)
    assert {name: q.max_workers for name, q in config.queues.items()} == {
        "default": 1,
        "scheduled": 1,
    }


def test_queues_join_the_two_built_in_ones_and_may_raise_their_limits(tmp_path: Path) -> None:
    config = parse_config(
        write(
            tmp_path,
            "[tasks.queues]\nvideo = { max_workers = 2 }\nscheduled = { max_workers = 3 }\n",
        )
    )
    assert {name: q.max_workers for name, q in config.queues.items()} == {
        "default": 1,
        "scheduled": 3,
        "video": 2,
    }


def test_relative_paths_are_relative_to_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    write(app, '[tasks]\nstorage = "var"\ndatabase_url = "sqlite:///var/db.sqlite"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(explicit=app / "rsx.toml")
    assert config.storage == app / "var"
    assert config.database_url == f"sqlite:///{app / 'var' / 'db.sqlite'}"


def test_server_urls_are_kept_as_written(tmp_path: Path) -> None:
    url = "postgresql+psycopg://app@db.internal:5432/tasks"
    config = parse_config(write(tmp_path, f'[tasks]\ndatabase_url = "{url}"\n'))
    assert config.database_url == url


def test_environment_overrides_database_url_and_server_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[tasks]\nserver_id = 1\n")
    monkeypatch.setenv("RSX_DATABASE_URL", "sqlite:////srv/tasks.db")
    monkeypatch.setenv("RSX_SERVER_ID", "7")
    config = parse_config(path)
    assert (config.database_url, config.server_id) == ("sqlite:////srv/tasks.db", 7)


def test_a_bad_server_id_in_the_environment_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSX_SERVER_ID", "two")
    with pytest.raises(ConfigError, match="RSX_SERVER_ID must be an integer"):
        parse_config(write(tmp_path, ""))


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        ("[tasks]\nglobal_max_workers = 2\nqueue_size = 3\n", "tasks.queue_size", 3, "unknown key"),
        ('[tasks]\ndefault_timeout = "long"\n', "tasks.default_timeout", 2, "must be an integer"),
        ("[tasks]\ndefault_timeout = true\n", "tasks.default_timeout", 2, "must be an integer"),
        ("[tasks]\nglobal_max_workers = 0\n", "tasks.global_max_workers", 2, "must be >= 1"),
        ('[tasks]\ntimezone = "Mars/Olympus"\n', "tasks.timezone", 2, "not a known timezone"),
        ("[tasks.queues]\nvideo = { max_workers = 0 }\n", "tasks.queues.video", 2, "must be >= 1"),
        ("[tasks.queues]\nvideo = { workers = 2 }\n", "tasks.queues.video", 2, "unknown key"),
        ("[tasks.queues]\nvideo = 2\n", "tasks.queues.video", 2, "must be a table"),
        ("[task]\nservices = 'x'\n", "task", 1, "unknown key"),
    ],
)
def test_errors_name_the_key_and_its_line(
    tmp_path: Path, text: str, key: str, line: int, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, text))
    error = raised.value
    assert (error.key, error.line, error.path) == (key, line, "rsx.toml")
    assert words in error.message
    assert key in error.message


def test_invalid_toml_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, "[tasks]\nservices = \n"))
    assert raised.value.line == 2
    assert raised.value.message.startswith("invalid TOML")


def test_pyproject_tool_rsx_tables_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[project]\nname = "app"\n\n[tool.rsx.tasks]\ntimezone = "Europe/London"\n\n'
        "[tool.rsx.tasks.queues]\nemail = { max_workers = 5 }\n",
        name="pyproject.toml",
    )
    assert find_config(start=tmp_path) == path
    config = parse_config(path)
    assert config.timezone == "Europe/London"
    assert config.queues["email"].max_workers == 5


def test_pyproject_errors_name_the_tool_rsx_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.rsx.tasks]\nwidgets = 1\n", name="pyproject.toml")
    with pytest.raises(ConfigError) as raised:
        parse_config(path)
    assert (raised.value.key, raised.value.line) == ("tool.rsx.tasks.widgets", 2)


def test_discovery_walks_up_and_prefers_rsx_toml_over_pyproject(tmp_path: Path) -> None:
    rsx = write(tmp_path, "")
    write(tmp_path, "[tool.rsx.tasks]\n", name="pyproject.toml")
    deep = tmp_path / "app" / "views"
    deep.mkdir(parents=True)
    assert find_config(start=deep) == rsx


def test_a_pyproject_without_tool_rsx_is_passed_over(tmp_path: Path) -> None:
    rsx = write(tmp_path, "")
    write(tmp_path / "lib", '[project]\nname = "lib"\n', name="pyproject.toml")
    assert find_config(start=tmp_path / "lib") == rsx


def test_rsx_config_wins_over_discovery_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "")
    other = write(tmp_path / "elsewhere", "")
    monkeypatch.setenv("RSX_CONFIG", str(other))
    assert find_config(start=tmp_path) == other
    monkeypatch.setenv("RSX_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError) as raised:
        find_config(start=tmp_path)
    assert raised.value.missing


def test_no_config_anywhere_is_a_missing_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        find_config(start=tmp_path)
    assert raised.value.missing
    assert "rsx.toml" in raised.value.message


# Bounds, new keys and values that used to escape as tracebacks.


def test_the_new_keys_have_their_defaults(tmp_path: Path) -> None:
    config = parse_config(write(tmp_path, ""))
    assert (config.worker_idle_seconds, config.log_level) == (10, "INFO")
    assert (config.max_log_bytes, config.max_result_bytes) == (4_000_000, 4_000_000)


def test_the_new_keys_are_read(tmp_path: Path) -> None:
    config = parse_config(
        write(
            tmp_path,
            '[tasks]\nworker_idle_seconds = 0\nlog_level = "Warning"\n'
            "max_log_bytes = 1000\nmax_result_bytes = 1000000000\n",
        )
    )
    assert (config.worker_idle_seconds, config.log_level) == (0, "WARNING")
    assert (config.max_log_bytes, config.max_result_bytes) == (1000, 1_000_000_000)


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "eRRoR"])
def test_log_level_is_any_case_and_usable_with_logging(tmp_path: Path, level: str) -> None:
    config = parse_config(write(tmp_path, f'[tasks]\nlog_level = "{level}"\n'))
    assert config.log_level == level.upper()
    assert logging.getLevelName(config.log_level) == getattr(logging, level.upper())


@pytest.mark.parametrize(
    ("key", "largest"),
    [
        ("default_timeout", 315_360_000),
        ("cleanup_stuck_after", 315_360_000),
        ("temp_directory_default_ttl", 315_360_000),
        ("task_retention_days", 36_500),
        ("worker_idle_seconds", 3600),
        ("max_log_bytes", 1_000_000_000),
        ("max_result_bytes", 1_000_000_000),
        ("server_id", 2_147_483_647),
        ("global_max_workers", 2_147_483_647),
    ],
)
def test_every_integer_key_has_an_upper_bound_named_in_its_error(
    tmp_path: Path, key: str, largest: int
) -> None:
    config = parse_config(write(tmp_path, f"[tasks]\n{key} = {largest}\n"))
    assert getattr(config, key) == largest
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, f"[tasks]\n{key} = {largest + 1}\n"))
    error = raised.value
    assert (error.key, error.line) == (f"tasks.{key}", 2)
    assert f"'tasks.{key}' must be <= {largest}" in error.message
    assert str(largest + 1) in error.message


def test_a_duration_bound_says_how_long_it_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, "[tasks]\ndefault_timeout = 3000000000\n"))
    assert raised.value.message == (
        "'tasks.default_timeout' must be <= 315360000 seconds (10 years), got 3000000000"
    )


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[tasks]\nworker_idle_seconds = -1\n", "tasks.worker_idle_seconds", "must be >= 0"),
        ("[tasks]\nmax_log_bytes = 999\n", "tasks.max_log_bytes", "must be >= 1000"),
        ("[tasks]\nmax_result_bytes = 1.5\n", "tasks.max_result_bytes", "must be an integer"),
        ('[tasks]\nlog_level = "verbose"\n', "tasks.log_level", "one of debug, info, warning"),
        ("[tasks]\nlog_level = 10\n", "tasks.log_level", "must be a non-empty string"),
        ("[tasks.queues]\nvideo = { max_workers = 9999999999 }\n", "tasks.queues.video", "<="),
    ],
)
def test_new_keys_are_checked_like_the_others(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, text))
    assert (raised.value.key, raised.value.line) == (key, 2)
    assert words in raised.value.message


def test_a_server_id_beyond_the_integer_column_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSX_SERVER_ID", "2147483648")
    with pytest.raises(ConfigError, match="RSX_SERVER_ID' must be <= 2147483647"):
        parse_config(write(tmp_path, ""))


@pytest.mark.parametrize("zone", ["Europe", "America", "zone.tab", "Etc/../UTC", "x" * 300])
def test_a_timezone_that_is_a_folder_or_not_a_zone_is_a_config_error(
    tmp_path: Path, zone: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, f'[tasks]\ntimezone = "{zone}"\n'))
    assert (raised.value.key, raised.value.line) == ("tasks.timezone", 2)
    assert "is not a known timezone" in raised.value.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[tool]\nrsx = 5\n", "tool.rsx"),
        ('tool = "x"\n', "tool"),
        ("[tool.rsx]\ntasks = 3\n", "tool.rsx.tasks"),
    ],
)
def test_pyproject_tables_of_the_wrong_type_are_config_errors(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, text, name="pyproject.toml"))
    assert raised.value.key == key
    assert f"'{key}' must be a table" in raised.value.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://u:s3cret@host:abc/db", "its port 'abc' is not a number"),
        ("postgresql://u:s3cret@host:99999/db", "its port 99999 is above 65535"),
        ("postgresql://u:s3cret@host:٣/db", "its port '٣' is not a number"),
        ("tasks.db", "it is not a URL like dialect://user:password@host:port/database"),
    ],
)
def test_a_database_url_that_does_not_parse_is_named_without_its_password(
    tmp_path: Path, url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, f'[tasks]\ndatabase_url = "{url}"\n'))
    error = raised.value
    assert (error.key, error.line) == ("tasks.database_url", 2)
    assert error.message == f"'tasks.database_url' is not a valid database URL: {reason}"
    assert "s3cret" not in error.message


def test_a_bad_database_url_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSX_DATABASE_URL", "mysql+pymysql://u:s3cret@db:port/x")
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, ""))
    assert raised.value.message.startswith("'RSX_DATABASE_URL' is not a valid database URL")
    assert "s3cret" not in raised.value.message


@pytest.mark.parametrize("key", ["services", "output", "storage", "database_url", "timezone"])
@pytest.mark.parametrize("control", ["\\n", "\\r", "\\u0000", "\\u001b", "\\t", "\\u0085"])
def test_control_characters_in_a_string_value_are_refused(
    tmp_path: Path, key: str, control: str
) -> None:
    value = "sqlite:///x.db" if key == "database_url" else "Europe/London"
    value = value + control + "import os"
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, f'[tasks]\n{key} = "{value}"\n'))
    assert (raised.value.key, raised.value.line) == (f"tasks.{key}", 2)
    assert f"'tasks.{key}' must not contain control characters" in raised.value.message
    assert "\n" not in raised.value.message and "\x1b" not in raised.value.message


def test_an_unknown_key_with_a_control_character_is_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(write(tmp_path, '[tasks]\n"a\\u001b[2Jb" = 1\n'))
    assert raised.value.message == "unknown key 'tasks.a\\x1b[2Jb'"
