"""The form-resume journey end to end: a form begun in a web session and not sent; half an hour
later a push on mobile carries a resume link issued through the session API, and the link
resumes the session on the mobile source. Conditions read the live session state too."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels.models import Delivery
from journeys import demo
from journeys.models import Enrollment
from journeys.services import enrollment_start, timers_tick
from profiles.models import Customer
from tests.conftest import IngestClient
from tests.factories import SourceFactory
from tests.journeys.engine_support import fresh_contact_policy, providers, publish, route_pending, send

pytestmark = pytest.mark.django_db
__all__ = ["fresh_contact_policy", "providers"]


@pytest.fixture
def web_session(ingest: Any, sessions_for: Callable[[Any], Any], providers: None, settings: Any) -> dict[str, Any]:
    settings.SESSIONS_RESUME_URL = "https://app.example.com/resume?t={token}"
    web = SourceFactory(channel="web")
    started = sessions_for(web).start({"userId": "f1", "device": "laptop", "state": {"form": {"step": 2}}})
    assert started.status_code == 201, started.content
    route_pending()
    send(
        ingest,
        {
            "type": "identify",
            "userId": "f1",
            "traits": {"push_token": "device-f1", "phone": "+14155550102"},
            "context": {"consent": {"marketing": True}},
        },
    )
    return {"web": web, "session": started.json()}


def test_an_unsent_form_gets_a_mobile_push_with_a_working_resume_link(
    web_session: dict[str, Any], sessions_for: Callable[[Any], Any], client: Any
) -> None:
    publish(demo.FORM_RESUME, key="form-resume")
    web_ingest = IngestClient(client, web_session["web"].write_key)
    send(web_ingest, {"type": "track", "userId": "f1", "event": "Form Started"})
    enrollment = Enrollment.objects.get(journey__key="form-resume")
    assert enrollment.step == "wait_for_submit"

    timers_tick(now=timezone.now() + timedelta(minutes=31))
    push = Delivery.objects.get()
    assert push.channel == "push"
    url = push.content["url"]
    assert url.startswith("https://app.example.com/resume?t=tlr_")

    mobile = SourceFactory(channel="mobile")
    resumed = sessions_for(mobile).resume({"token": url.split("t=", 1)[1], "device": "phone"})
    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["id"] == web_session["session"]["id"]
    assert resumed.json()["state"] == {"form": {"step": 2}}


def test_a_branch_reads_the_live_session_state(web_session: dict[str, Any]) -> None:
    version = publish(
        {
            "trigger": {"type": "api"},
            "start": "where",
            "steps": {
                "where": {
                    "type": "branch",
                    "branches": [
                        {"condition": {"field": "session.form.step", "op": "gte", "value": 2}, "next": "nearly"},
                    ],
                    "default": "early",
                },
                "nearly": {"type": "route", "destination": "nearly_done"},
                "early": {"type": "route", "destination": "early"},
            },
        },
        key="session-branch",
    )
    customer = Customer.objects.get(identities__kind="user_id", identities__value="f1")
    enrollment = enrollment_start(journey=version.journey, customer_id=customer.id)
    assert enrollment.state["routes"][0]["destination"] == "nearly_done"
