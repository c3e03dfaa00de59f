"""List and mapping settings read what .env.example and the docs write, and a bad value stops
start-up with a message naming the variable."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.parsing import env_items, env_mapping, env_names, env_networks

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {"default": 1800, "web": 1800, "pos": 900}


def _settings_in_a_new_process(names: list[str], **environment: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_documented_inactivity_format_starts_up() -> None:
    run = _settings_in_a_new_process(["SESSIONS_INACTIVITY_SECONDS"], SESSIONS_INACTIVITY_SECONDS="web=1200, pos=600")
    assert run.returncode == 0, run.stderr
    timeouts = json.loads(run.stdout)["SESSIONS_INACTIVITY_SECONDS"]
    assert (timeouts["web"], timeouts["pos"], timeouts["chat"], timeouts["default"]) == (1200, 600, 3600, 1800)


def test_the_env_example_lines_start_up() -> None:
    example = (ROOT / ".env.example").read_text()
    wanted = [
        "SESSIONS_INACTIVITY_SECONDS",
        "CHANNELS_SMS_STOP_PURPOSES",
        "CHANNELS_EMAIL_OPT_OUT_PURPOSES",
        "CHANNELS_SWEEP_RESEND_CHANNELS",
        "METRICS_ALLOWED_IPS",
        "METRICS_EXTRA_QUEUES",
    ]
    values = {name: re.search(rf"^{name}=(.*)$", example, re.MULTILINE)[1] for name in wanted}  # type: ignore[index]
    run = _settings_in_a_new_process(wanted, **values)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert loaded["SESSIONS_INACTIVITY_SECONDS"]["pos"] == 900
    assert loaded["CHANNELS_SWEEP_RESEND_CHANNELS"] == ["sms", "webhook"]


def test_a_bad_inactivity_value_stops_start_up_naming_the_variable() -> None:
    run = _settings_in_a_new_process(["SESSIONS_INACTIVITY_SECONDS"], SESSIONS_INACTIVITY_SECONDS="web=half-an-hour")
    assert run.returncode != 0
    assert "ImproperlyConfigured: SESSIONS_INACTIVITY_SECONDS='web=half-an-hour'" in run.stderr


def test_a_mapping_overrides_the_defaults_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_TIMEOUTS", " web = 60 ,, chat=90 ")
    assert env_mapping("X_TIMEOUTS", default=DEFAULTS, example="web=60") == {
        "default": 1800,
        "web": 60,
        "pos": 900,
        "chat": 90,
    }


def test_an_unset_or_empty_mapping_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_TIMEOUTS", raising=False)
    assert env_mapping("X_TIMEOUTS", default=DEFAULTS, example="web=60") == DEFAULTS
    monkeypatch.setenv("X_TIMEOUTS", "")
    assert env_mapping("X_TIMEOUTS", default=DEFAULTS, example="web=60") == DEFAULTS


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("web:60", "'web:60' is not name=value"),
        ("web=60;pos=30", "web='60;pos=30' is not a positive whole number"),
        ("web=0", "web='0' is not a positive whole number"),
        ("web=-5", "web='-5' is not a positive whole number"),
        ("Web Site=60", "'Web Site=60' is not name=value"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str, problem: str) -> None:
    monkeypatch.setenv("X_TIMEOUTS", raw)
    with pytest.raises(ImproperlyConfigured) as refused:
        env_mapping("X_TIMEOUTS", default=DEFAULTS, example="web=60")
    assert str(refused.value) == f"X_TIMEOUTS={raw!r}: {problem} (expected e.g. X_TIMEOUTS=web=60)"


def test_list_items_lose_surrounding_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_CHANNELS", " sms , webhook,")
    assert env_items("X_CHANNELS", default=[]) == ["sms", "webhook"]
    assert env_names("X_CHANNELS", default=[], example="sms") == ["sms", "webhook"]


def test_a_list_of_names_refuses_what_no_channel_or_purpose_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_CHANNELS", "sms;webhook")
    with pytest.raises(ImproperlyConfigured, match=r"^X_CHANNELS='sms;webhook': 'sms;webhook' is not a name"):
        env_names("X_CHANNELS", default=[], example="sms,webhook")


def test_networks_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_IPS", "10.0.0.0/8, 192.168.1.5")
    assert env_networks("X_IPS", example="10.0.0.0/8") == ["10.0.0.0/8", "192.168.1.5"]
    monkeypatch.setenv("X_IPS", "10.0.0.0/8,office")
    with pytest.raises(ImproperlyConfigured, match=r"^X_IPS='10.0.0.0/8,office': 'office' is not an IP address"):
        env_networks("X_IPS", example="10.0.0.0/8")
