"""The whole flow in embedded mode, from the outside, as `make run` starts it with no configuration:
events in, a journey sends a message that reaches `sent` through the console provider, a decision
is recorded and explained, and the operations dashboard is green."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ROOT, answers, free_port, wait_until
from tests.core.test_embedded_mode import _run, laptop  # noqa: F401 - the fixture

WELCOME = {
    "trigger": {"type": "event", "event": "Signed Up"},
    "entry": {"reentry": "every_time"},
    "start": "welcome",
    "steps": {
        "welcome": {
            "type": "message",
            "name": "Welcome email",
            "channels": ["email"],
            "purpose": "transactional",
            "priority": "high",
            "content": {"email": {"subject": "Welcome, {{ profile.first_name }}", "body": "Glad you are here."}},
            "default_content": {"email": {"subject": "Welcome", "body": "Glad you are here."}},
            "next": "done",
        },
        "done": {"type": "exit"},
    },
}

# The draft goes in the way an operator's admin session would create it; everything after that
# goes through the public API.
_CREATE_DRAFT = """
from journeys.services import journey_create
version = journey_create(key="welcome", name="Welcome", definition={definition})
print(version.journey_id)
"""


def test_make_run_flow_sends_a_message_records_a_decision_and_the_dashboard_is_green(
    laptop: dict[str, str],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    env = laptop | {"DEMO_CREDENTIALS_FILE": str(tmp_path / "demo-credentials.json")}
    _run(env, "seed_demo")
    credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
    write_key, token = credentials["sources"]["demo-web"], credentials["api_token"]
    journey_id = _run(env, "shell", "-c", _CREATE_DRAFT.format(definition=repr(WELCOME))).strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        wait_until(lambda: answers(f"{base}/healthz"), timeout=90, message="serve starts")
        published = requests.post(f"{base}/api/v1/journeys/{journey_id}/versions/1/publish", headers=bearer, timeout=30)
        assert published.status_code == 200, published.text

        calls: list[tuple[str, dict[str, Any]]] = [
            ("identify", {"userId": "ann", "traits": {"email": "ann@example.com", "first_name": "Ann", "vip": True}}),
            ("track", {"userId": "ann", "event": "Signed Up"}),
        ]
        for call, body in calls:
            answer = requests.post(f"{base}/v1/{call}", json=body, auth=(write_key, ""), timeout=30)
            assert answer.status_code == 200, answer.text
        customer = requests.get(f"{base}/api/v1/customers", params={"user_id": "ann"}, headers=bearer, timeout=30)
        assert customer.status_code == 200, customer.text
        customer_id = customer.json()["id"]

        def deliveries() -> list[dict[str, Any]]:
            timeline = requests.get(
                f"{base}/api/v1/customers/{customer_id}/timeline",
                params={"kinds": "delivery"},
                headers=bearer,
                timeout=30,
            ).json()
            return [entry for entry in timeline["results"] if entry["kind"] == "delivery"]

        wait_until(lambda: [d["data"]["status"] for d in deliveries()] == ["sent"], timeout=60, message="sent")
        delivery = deliveries()[0]

        decided = requests.post(
            f"{base}/v1/decide",
            json={"userId": "ann", "placement": "support_entry", "channel": "web"},
            auth=(write_key, ""),
            timeout=30,
        )
        assert decided.status_code == 200, decided.text
        decision_id = decided.json()["decision_id"]

        def decision() -> requests.Response:
            return requests.get(f"{base}/api/v1/decisions/{decision_id}", headers=bearer, timeout=30)

        # Decisions are written behind the answer (a linger of 50 ms), so the read may wait for it.
        wait_until(lambda: decision().status_code == 200, timeout=30, message="the decision is recorded")
        explained = decision().json()

        admin = requests.Session()
        login = admin.get(f"{base}/admin/login/", timeout=30)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert csrf is not None
        admin.post(
            f"{base}/admin/login/",
            data={
                "username": "admin",
                "password": credentials["admin_password"],
                "csrfmiddlewaretoken": csrf.group(1),
                "next": "/admin/operations/",
            },
            headers={"Referer": f"{base}/admin/login/"},
            timeout=30,
        )
        dashboard = admin.get(f"{base}/admin/operations/", timeout=30)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            output, _ = serve.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            output, _ = serve.communicate()
    assert (delivery["channel"], delivery["data"]["provider"]) == ("email", "console"), delivery
    # The console provider showed the rendered message in the log.
    assert "Welcome, Ann" in output, output
    assert explained["result"]["route"] == "premium_support", explained
    assert explained["explanation"]["customer_found"] is True, explained
    assert dashboard.status_code == 200
    assert "Operations" in dashboard.text
    assert "Not answering" not in dashboard.text, dashboard.text
