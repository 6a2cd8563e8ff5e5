"""rsx.toml: finding it, its defaults, environment overrides and errors that name the key."""

from __future__ import annotations

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
