"""The deployment samples work as written: the image's config listens where the image
exposes, and the systemd unit and the how-to agree on the secrets file's mode."""

from __future__ import annotations

import re

from posventa.core.config import load_config
from tests.support import REPO

DEPLOY = REPO / "deploy"


def test_the_images_config_listens_on_every_interface_on_the_exposed_ports(monkeypatch):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [exposed] = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    [config_path] = re.findall(r"^\s+POSVENTA_CONFIG=(\S+)", dockerfile, re.M)
    copied = dict((dst, src) for src, dst in re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.M))
    assert copied[config_path] == "deploy/docker.example.toml"
    for name in ("POSVENTA_DATABASE_URL", "POSVENTA_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(str(REPO / copied[config_path]))  # validated as serve would
    assert (config.http.host, config.email.listen_host) == ("0.0.0.0", "0.0.0.0")
    assert {config.http.port, config.email.listen_port} == {int(p) for p in exposed.split()}
    # The health check asks the port the config serves on.
    assert f"127.0.0.1:{config.http.port}/healthz" in dockerfile
    # SQLite and attachments on the image's volume, which the posventa user owns.
    [volume] = re.findall(r'^VOLUME \["([^"]+)"\]', dockerfile, re.M)
    assert config.database.url.endswith(f"//{volume}/posventa.db") and config.service.data_dir.startswith(volume)


def test_the_unit_and_the_how_to_agree_on_the_env_files_mode():
    unit = (DEPLOY / "posventa@.service").read_text()
    how_to = (DEPLOY / "README.md").read_text()
    assert "EnvironmentFile=/etc/posventa/posventa.env" in unit
    modes = set(re.findall(r"mode (0\d{3})", unit + how_to)) | set(
        re.findall(r"chmod (0\d{3}) /etc/posventa/posventa.env", how_to))
    owners = set(re.findall(r"chown (\S+) /etc/posventa/posventa.env", how_to))
    assert modes == {"0640"} and owners == {"root:posventa"}
    assert "group\n# posventa" in unit or "group posventa" in unit
