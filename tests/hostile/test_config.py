"""The config loader against random TOML: documents built from the real schema with wrong
values and types, raw byte mutations of config.example.toml, and hostile environment
variables. Whatever the input, ``load_config`` returns a Config or raises ConfigError
naming the file, and, when the TOML itself parsed, the key at fault."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from datetime import date, datetime, time, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posventa.core.config import SECRET_ENV, Config, load_config
from posventa.core.errors import ConfigError
from tests.hostile.conftest import fuzz
from tests.support import REPO


def _schema(cls: type = Config, prefix: str = "") -> dict[str, object]:
    """Dotted key → default, from the dataclasses themselves (so new keys are fuzzed too)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        default = f.default
        if dataclasses.is_dataclass(default):
            out.update(_schema(type(default), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = default
    return out


SCHEMA = _schema()
KEYS = sorted(SCHEMA)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are a subset of TOML's basic strings
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def document(assignments: list[tuple[str, object]]) -> str:
    """``[(dotted.key, value)]`` as TOML, one ``[section]`` per prefix (later wins on clashes
    only if TOML allows it; a duplicate key is itself a TOMLDecodeError worth trying)."""
    lines: list[str] = []
    for key, value in assignments:
        section, _, name = key.rpartition(".")
        if section:
            lines.append(f"[{section}]")
        lines.append(f"{json.dumps(name)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.booleans(), st.integers(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["", " ", "\x00", "../../etc/passwd", "America", "a" * 5000, "UTC",
                                           "https://", "http://x", "*", "es", "zz", "webhook", "polling"]),
    st.datetimes(timezones=st.just(timezone.utc)), st.dates(), st.times(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(min_size=1, max_size=12),
                 st.sampled_from(KEYS).map(lambda k: k + "x"), st.sampled_from(KEYS).map(lambda k: k.split(".")[0]))


def check(path: Path, env: dict[str, str] | None = None) -> None:
    try:
        config = load_config(path, env=env or {})
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message and "Traceback" not in message
        try:
            tomllib.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
            return  # the file itself is broken: naming the file is all there is to say
        assert exc.key and f"key {exc.key}" in message, message  # the key at fault, named
        return
    assert isinstance(config, Config)


@fuzz(300, deadline_seconds=5)
@given(assignments=st.lists(st.tuples(keys, values), max_size=8))
def test_random_documents_only_ever_raise_config_error(tmp_path_factory, tally, assignments):
    tally.add("config.documents")
    path = tmp_path_factory.mktemp("cfg") / "posventa.toml"
    path.write_text(document(assignments), encoding="utf-8", errors="surrogatepass")
    check(path)


EXAMPLE = (REPO / "config.example.toml").read_bytes()


@fuzz(200, deadline_seconds=5)
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 40), st.binary(max_size=12)), min_size=1, max_size=5))
def test_mutated_example_file(tmp_path_factory, tally, edits):
    tally.add("config.mutated_example")
    raw = EXAMPLE
    for where, cut, noise in edits:
        at = int(where * len(raw))
        raw = raw[:at] + noise + raw[at + cut:]
    path = tmp_path_factory.mktemp("cfg") / "posventa.toml"
    path.write_bytes(raw)
    check(path, {"POSVENTA_TELEGRAM_TOKEN": "1:x", "POSVENTA_KB_API_KEY": "k" * 20})


@fuzz(150, deadline_seconds=5)
@given(env=st.dictionaries(st.sampled_from(sorted(SECRET_ENV.values())),
                           st.text(max_size=60).filter(lambda s: "\x00" not in s), max_size=4),
       enable=st.sets(st.sampled_from(["telegram", "kb", "email"])))
def test_hostile_environment_secrets(tmp_path_factory, tally, env, enable):
    tally.add("config.environment")
    path = tmp_path_factory.mktemp("cfg") / "posventa.toml"
    body = "".join(f"[{name}]\nenabled = true\n" for name in sorted(enable))
    if "kb" in enable:
        body += 'api_url = "https://forum.example.com"\n'
    path.write_text(body, encoding="utf-8")
    check(path, env)


@pytest.mark.parametrize("body,key", [
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", None),  # recursion in the TOML parser
    ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", None),
    ('[surveys]\ntimezone = "America"\n', "surveys.timezone"),  # a directory of the tz database
    ('[surveys]\ntimezone = "' + "a" * 5000 + '"\n', "surveys.timezone"),  # ENAMETOOLONG
    ('[surveys]\ntimezone = "America/"\n', "surveys.timezone"),
    ('[surveys]\ntimezone = "/etc/localtime"\n', "surveys.timezone"),
    ("[http]\nport = 99999999999999999999999\n", "http.port"),
    ("[kb]\nmin_score = nan\n", "kb.min_score"),
    ("[webchat]\nallowed_origins = [[1]]\n", "webchat.allowed_origins"),
    ("[telegram]\nagents = [1.5]\n", "telegram.agents"),
    ("[email.outbound]\nport = true\n", "email.outbound.port"),
    ("source = 'x'\n", "source"),
    ("[email]\noutbound = 1\n", "email.outbound"),
    ('"" = []\n', '""'),  # an empty key, found by the fuzz above
    ('[webchat]\n"" = 1\n', 'webchat.""'),
    ('[http]\ntrusted_proxies = ["10.0.0.0/33"]\n', "http.trusted_proxies"),
    ('[http]\ntrusted_proxies = ["nginx"]\n', "http.trusted_proxies"),
    ('[http]\nmetrics_allow_from = ["::1/129"]\n', "http.metrics_allow_from"),
    ('[http]\nmetrics_token = "short"\n', "http.metrics_token"),
    ("[webchat]\nbehind_proxy = true\n", "webchat.behind_proxy"),  # replaced by trusted_proxies
    ("[webchat]\nmax_rejected_frames = 0\n", "webchat.max_rejected_frames"),
    ('[service]\nlog_format = "xml"\n', "service.log_format"),
    ('[service]\nlog_level = "LOUD"\n', "service.log_level"),
    ('[email]\nsmtp_log_level = "chatty"\n', "email.smtp_log_level"),
])
def test_named_hostile_values(tmp_path, tally, body, key):
    tally.add("config.named")
    path = tmp_path / "posventa.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)
    if key is not None:
        assert info.value.key == key, str(info.value)
