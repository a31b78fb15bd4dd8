"""Settings from the environment: `make run` on any PORT serves links that work."""

from pathlib import Path

from consent import config, notifications

ROOT = Path(__file__).resolve().parent.parent


def settings(tmp_path, **env):
    return config.from_environment(str(tmp_path), {"SECRET_KEY": "s" * 40, **env})


def test_public_base_url_follows_port_when_not_set(tmp_path):
    assert settings(tmp_path, PORT="8123")["PUBLIC_BASE_URL"] == "http://127.0.0.1:8123"
    assert settings(tmp_path)["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"


def test_public_base_url_as_set_wins_over_port(tmp_path):
    got = settings(tmp_path, PORT="8123", PUBLIC_BASE_URL="https://consent.example.org/")
    assert got["PUBLIC_BASE_URL"] == "https://consent.example.org"


def test_production_never_guesses_its_public_address(tmp_path):
    assert settings(tmp_path, PRODUCTION="1", PORT="8123")["PUBLIC_BASE_URL"] is None


def test_links_in_messages_use_the_port_served(app, tmp_path):
    app.config["PUBLIC_BASE_URL"] = settings(tmp_path, PORT="8123")["PUBLIC_BASE_URL"]
    assert notifications.link("/confirm/abc") == "http://127.0.0.1:8123/confirm/abc"


def test_make_run_passes_its_port_to_the_app():
    assert "export PORT" in (ROOT / "Makefile").read_text()
