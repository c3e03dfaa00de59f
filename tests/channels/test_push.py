"""Push through FCM HTTP v1 against a local stand-in: the OAuth JWT grant, the message format,
dead tokens, quota errors."""

import base64
import urllib.parse
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from channels import contracts
from channels.models import Delivery, DeliveryStatus, UndeliverableAddress
from channels.services.attempts import delivery_attempt
from profiles.models import Event, QuarantinedMessage
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink
from tests.conftest import client_traceparents

pytestmark = pytest.mark.django_db
TOKEN_GRANT: tuple[int, dict[str, str], bytes] = (
    200,
    {},
    b'{"access_token": "ya29.stand-in", "expires_in": 3599, "token_type": "Bearer"}',
)
DEVICE = "fcm-registration-token-of-the-phone"


@pytest.fixture
def service_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(providers: Any, http_sink: HttpSink, service_key: rsa.RSAPrivateKey) -> HttpSink:
    providers["fcm"] = {
        "kind": "fcm",
        "base_url": http_sink.url,
        "project_id": "throughline-demo",
        "token_uri": f"{http_sink.url}/token",
        "client_email": "push@throughline-demo.iam.gserviceaccount.com",
        "private_key": service_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    }
    http_sink.by_path["/token"] = TOKEN_GRANT
    http_sink.default = (200, {}, b'{"name": "projects/throughline-demo/messages/0:1700000000000001%abc"}')
    return http_sink


def _push(customer_id: Any, key: str = "p1") -> contracts.DeliveryRef:
    return contracts.deliver(
        channel="push",
        customer_id=customer_id,
        content={"title": "Your cart", "body": "Still thinking it over?", "data": {"cart": 42}},
        idempotency_key=key,
    )


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_push_is_sent_in_fcm_v1_format_with_an_oauth_token(fcm: HttpSink, service_key: rsa.RSAPrivateKey) -> None:
    customer = customer_with(user_id="u1", traits={"push_token": DEVICE})
    ref = _push(customer.id)

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.SENT

    grant, send = fcm.requests
    form = urllib.parse.parse_qs(grant.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    header, claims, signature = form["assertion"][0].split(".")
    service_key.public_key().verify(_b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    assert orjson.loads(_b64(claims))["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert send.path == "/v1/projects/throughline-demo/messages:send"
    assert send.headers["Authorization"] == "Bearer ya29.stand-in"
    assert orjson.loads(send.body) == {
        "message": {
            "token": DEVICE,
            "notification": {"title": "Your cart", "body": "Still thinking it over?"},
            "data": {"cart": "42", "delivery_id": str(ref.id)},
        }
    }
    delivery = Delivery.objects.get(id=ref.id)
    assert delivery.provider_message_id == "0:1700000000000001%abc"
    assert Event.objects.filter(customer_id=customer.id, name="Message Sent").count() == 1


def test_an_outcome_for_a_customer_nothing_addresses_is_neither_stored_nor_quarantined(fcm: HttpSink) -> None:
    customer = customer_with(traits={"push_token": DEVICE})  # no user id, anonymous id, email or phone

    assert delivery_attempt(delivery_id=_push(customer.id).id).status == DeliveryStatus.SENT

    assert (Event.objects.filter(name="Message Sent").count(), QuarantinedMessage.objects.count()) == (0, 0)


def test_the_token_and_send_calls_carry_the_traceparent_of_their_spans(
    fcm: HttpSink, spans: InMemorySpanExporter
) -> None:
    customer = customer_with(user_id="u1", traits={"push_token": DEVICE})

    assert delivery_attempt(delivery_id=_push(customer.id).id).status == DeliveryStatus.SENT

    grant, send = fcm.requests
    assert {grant.headers["traceparent"], send.headers["traceparent"]} == client_traceparents(spans)


def test_the_access_token_is_fetched_once_for_many_pushes(fcm: HttpSink) -> None:
    customer = customer_with(user_id="u1", traits={"push_token": DEVICE})

    for key in ("a", "b", "c"):
        delivery_attempt(delivery_id=_push(customer.id, key).id)

    assert [request.path for request in fcm.requests].count("/token") == 1


def test_a_push_token_identity_wins_over_the_trait(fcm: HttpSink) -> None:
    customer = customer_with(user_id="u1", push_token="token-from-identity", traits={"push_token": DEVICE})

    delivery_attempt(delivery_id=_push(customer.id).id)

    assert orjson.loads(fcm.requests[-1].body)["message"]["token"] == "token-from-identity"


def test_an_unregistered_token_fails_the_push_and_is_not_tried_again(fcm: HttpSink) -> None:
    fcm.script = [
        (
            404,
            {"Content-Type": "application/json"},
            orjson.dumps(
                {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                }
            ),
        )
    ]
    customer = customer_with(user_id="u1", traits={"push_token": DEVICE})
    ref = _push(customer.id)

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.FAILED

    assert UndeliverableAddress.objects.filter(channel="push", address=DEVICE).exists()
    failed = Event.objects.get(customer_id=customer.id, name="Message Failed")
    assert "UNREGISTERED" in failed.properties["reason"]
    assert contracts.channels_available(customer_id=customer.id, channels=["push"], purpose="transactional") == {
        "push": "undeliverable"
    }


def test_quota_exceeded_is_retried_after_retry_after(fcm: HttpSink) -> None:
    fcm.script = [
        (
            429,
            {"Retry-After": "40"},
            b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",'
            b' "details": [{"errorCode": "QUOTA_EXCEEDED"}]}}',
        )
    ]
    customer = customer_with(user_id="u1", traits={"push_token": DEVICE})
    ref = _push(customer.id)

    result = delivery_attempt(delivery_id=ref.id)

    assert (result.status, result.retry_in is not None and result.retry_in >= 40) == (DeliveryStatus.QUEUED, True)


def test_a_customer_without_a_push_token_is_skipped(fcm: HttpSink) -> None:
    customer = customer_with(user_id="u1")
    ref = _push(customer.id)

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.SKIPPED
    assert fcm.requests == []
