"""Database URLs in messages: the password is never shown, whichever way it was written."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from runtime.urls import check, masked_url, redact


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("sqlite:///storage/tasks.db", "sqlite:///storage/tasks.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:////abs/path.db?mode=ro", "sqlite:////abs/path.db?mode=ro"),
        ("postgresql+psycopg://app@db:5432/tasks", "postgresql+psycopg://app@db:5432/tasks"),
        (
            "postgresql+psycopg://app:s3cret@db:5432/tasks",
            "postgresql+psycopg://app:***@db:5432/tasks",
        ),
        ("mysql+pymysql://root:@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test"),
        ("postgresql://u:p%40ss%2Fw@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:pa/ss@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u@host/db?password=s3cret", "postgresql://u@host/db?password=***"),
        (
            "postgresql://u@host/db?sslmode=require&PassWord=s3cret&x=1",
            "postgresql://u@host/db?sslmode=require&PassWord=***&x=1",
        ),
        ("postgresql://u@host/db?pass%77ord=s3cret", "postgresql://u@host/db?pass%77ord=***"),
        (
            "postgresql://u@host/db?password=a&password=b",
            "postgresql://u@host/db?password=***&password=***",
        ),
        ("postgresql://u:one@host/db?password=two", "postgresql://u:***@host/db?password=***"),
        ("postgresql://u@host/db?passwords=kept", "postgresql://u@host/db?passwords=kept"),
    ],
)
def test_masked_url_hides_every_password(url: str, masked: str) -> None:
    assert masked_url(url) == masked


@pytest.mark.parametrize(
    "url",
    [
        "",
        "tasks.db",
        "not a url",
        "postgresql://u:s3cret@host:abc/db",
        "postgresql://u:s3cret@host:99999/db",
        "postgresql://u:s3cret@host:5432x/db",
        "postgresql://u:s3cret@host: 5432/db",
        "postgresql://u:s3cret@host:/db",
        "://u:s3cret@host/db",
    ],
)
def test_an_unparsable_url_is_never_shown(url: str) -> None:
    assert masked_url(url) == "<invalid database_url>"
    assert check(url) is not None
    assert "s3cret" not in (check(url) or "")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///storage/tasks.db",
        "postgresql+psycopg://app:s3cret@db:5432/tasks",
        "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
        "postgresql://u:pw@[::1]:5432/db",
    ],
)
def test_check_accepts_what_sqlalchemy_reads(url: str) -> None:
    assert check(url) is None
    make_url(url)


def test_check_agrees_with_sqlalchemy_on_the_password_it_masks() -> None:
    url = "postgresql+psycopg://app:s%3Acret%21@db:5432/tasks"
    assert make_url(url).password == "s:cret!"
    assert "s:cret!" not in redact("login failed for s:cret!", url)
    assert masked_url(url) == "postgresql+psycopg://app:***@db:5432/tasks"


@pytest.mark.parametrize(
    ("url", "message", "expected"),
    [
        (
            "postgresql://app:s3cret@db/tasks",
            'connection to "db" failed: password "s3cret" rejected',
            'connection to "db" failed: password "***" rejected',
        ),
        (
            "postgresql://app:p%40ss@db/tasks",
            "tried p@ss and p%40ss",
            "tried *** and ***",
        ),
        (
            "postgresql://app@db/tasks?PASSWORD=hunter%202",
            "hunter 2 / hunter%202",
            "*** / ***",
        ),
        (
            "postgresql://app:p@ss@db/tasks",
            "p@ss rejected",
            "*** rejected",
        ),
        (
            "postgresql://app@db/tasks",
            "no password here",
            "no password here",
        ),
        (
            "postgresql://app:@db/tasks",
            "an empty password replaces nothing",
            "an empty password replaces nothing",
        ),
        (
            "postgresql://app:s3cret@db:port/tasks",
            "even an invalid URL's password s3cret is hidden",
            "even an invalid URL's password *** is hidden",
        ),
    ],
)
def test_redact_replaces_the_password_in_a_message(url: str, message: str, expected: str) -> None:
    assert redact(message, url) == expected


def test_redact_replaces_the_longer_of_two_overlapping_passwords_first() -> None:
    url = "postgresql://app:abc@db/tasks?password=abcdef"
    assert redact("abcdef then abc", url) == "*** then ***"


def test_redact_of_a_text_that_is_not_a_url_changes_nothing() -> None:
    assert redact("s3cret", "no url at all") == "s3cret"
