"""Configuration mistakes are one clear line naming the key and the file, and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Site, digest

from digest import config


@pytest.mark.parametrize(("text", "says"), [
    ("[newsletter]\nnmae = 'x'\n", "unknown key 'newsletter.nmae'"),
    ("[smtp]\nport = 'twenty-five'\n", "smtp.port must be an integer, not 'twenty-five'"),
    ("[smtp]\nport = true\n", "smtp.port must be an integer"),
    ("[smtp]\npassword = 'hunter2'\n", "unknown key 'smtp.password' (secrets come from"),
    ("[delivery]\ntransport = 'pigeon'\n", "delivery.transport must be one of maildir, smtp"),
    ("[newsletter]\ntimezone = 'Mars/Olympus'\n", "is not a known time zone"),
    ("[[feeds]]\nname = 'x'\n", "feeds[1].url is required"),
    ("feeds = 'x'\n", "feeds must be a list"),
    ("[newsletter\n", "not valid TOML"),
    # Every link in the mail starts with it: href="news.example.com/…" leads nowhere.
    ("[newsletter]\npublic_url = 'news.example.com'\n",
     "newsletter.public_url must be an absolute http(s) URL such as \"https://news.example.com\""
     ", not 'news.example.com'"),
    ("[newsletter]\npublic_url = 'ftp://news.example.com'\n", "newsletter.public_url must be"),
    ("[newsletter]\npublic_url = 'https://news.example.com:99999'\n",
     "newsletter.public_url must be"),
    # It names Message-IDs (<…@not an address>) and the envelope sender.
    ("[newsletter]\nfrom = 'not an address'\n",
     "newsletter.from must be an address such as \"Example Digest <digest@example.com>\", "
     "not 'not an address'"),
    ("[newsletter]\nfrom = 'Digest <digest@example>'\n", "newsletter.from must be an address"),
    ("[newsletter]\nfrom = 'a@example.com, b@example.com'\n", "not one address"),
    ("[newsletter]\nreply_to = 'desk'\n", "newsletter.reply_to must be an address"),
    ("[web]\nport = 99999\n", "web.port must be a port from 1 to 65535, not 99999"),
    ("[smtp]\nport = 0\n", "smtp.port must be a port from 1 to 65535, not 0"),
])
def test_malformed_config_is_one_line_naming_key_and_file(site: Site, text: str,
                                                           says: str) -> None:
    site.config.write_text(text)
    result = digest("collect")
    assert result.exit_code == 2
    assert says in result.output
    assert "digest.toml" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("text", [
    "[newsletter]\npublic_url = 'https://news.example.com/digest'\n"
    "from = '\"Desk, News\" <desk@news.example.com>'\nreply_to = 'desk@example.com'\n",
    "[newsletter]\npublic_url = 'http://127.0.0.1:8080'\nfrom = 'digest@example.com'\n"
    "[web]\nport = 65535\n",
])
def test_well_formed_urls_addresses_and_ports_load(site: Site, text: str) -> None:
    site.config.write_text(text)
    assert config.load().source == site.config


def test_missing_config_file_named_on_the_command_line(site: Site) -> None:
    result = digest("--config", "nowhere.toml", "status")
    assert result.exit_code == 2
    assert "nowhere.toml: no such configuration file" in result.output


def test_no_file_at_all_runs_on_defaults(site: Site) -> None:
    settings = config.load()
    assert settings.source is None
    assert settings.feeds[0].url == str(config.SAMPLE_FEED)
    assert settings.paths.subscribers.is_file()
    assert settings.paths.state == site.root / "state"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "digest.toml").write_text("[paths]\nstate = 'var'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_CONFIG", str(folder / "digest.toml"))
    assert config.load().paths.state == folder / "var"


def test_the_example_config_documents_every_key() -> None:
    example = Path(__file__).parents[1] / "digest.example.toml"
    loaded = config.load(example)
    assert loaded.feeds[0].name == "World"
    text = example.read_text()
    for section in ("newsletter", "schedule", "delivery", "smtp", "paths", "store"):
        for item in config.dataclasses.fields(getattr(config, section.capitalize())):
            key = item.metadata.get("key", item.name)
            if "env" not in item.metadata and "internal" not in item.metadata:
                assert f"{key} =" in text, f"{section}.{key} undocumented"
    for item in config.dataclasses.fields(config.Feed):
        assert f"\n{item.name} =" in text or f"\n# {item.name} =" in text, (
            f"feeds.{item.name} undocumented")


def test_secrets_come_from_the_environment(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret")
    assert config.load().smtp.password == "s3cret"
