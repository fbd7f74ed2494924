import pytest

from resources.config import ConfigError, database_url, planexe_home, redact_url


def test_default_database_lives_in_planexe_home(isolated_home):
    assert planexe_home() == isolated_home.resolve()
    assert database_url() == f"sqlite:///{isolated_home.resolve() / 'planexe.db'}"


def test_database_url_env_overrides(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:secret@db:5432/plans")
    assert database_url() == "postgresql+psycopg://u:secret@db:5432/plans"


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("mysql://root@localhost/x", "not supported"),
        ("postgresql://u@h/db", "name its PostgreSQL driver"),
        ("not a url", "not a database URL"),
        ("redis://localhost:6379/0", "not supported"),
    ],
)
def test_bad_database_urls_are_refused(monkeypatch, url, fragment):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError) as err:
        database_url()
    assert fragment in str(err.value)


def test_redaction_hides_password():
    shown = redact_url("postgresql+psycopg://user:hunter2@db/plans")
    assert "hunter2" not in shown and "user" in shown
