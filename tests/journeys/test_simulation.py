"""The three demo journeys, and the machine's rules, on a virtual clock: no database, no
side effects, hours of journey time in milliseconds."""

from datetime import UTC, datetime, timedelta
from typing import Any

from journeys import demo
from journeys.engine.machine import cohort_bucket, next_window_start
from journeys.simulation import simulate

T0 = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # a Wednesday


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _steps(result: Any) -> list[tuple[str, str]]:
    return [(row["step"], row["outcome"]) for row in result.path]


# --- VIP routing ---------------------------------------------------------------------------------


def test_vip_routing_sends_a_vip_by_trait_to_premium_support() -> None:
    result = simulate(demo.VIP_ROUTING, {"traits": {"vip": True}}, [], T0, T0)
    assert result.enrollments[0]["routes"][0]["destination"] == "premium_support"
    assert result.path[0]["detail"]["chosen"] == "premium"


def test_vip_routing_sends_a_vip_segment_member_to_premium_support() -> None:
    result = simulate(demo.VIP_ROUTING, {"segments": ["vip"]}, [], T0, T0)
    assert result.enrollments[0]["routes"][0]["destination"] == "premium_support"


def test_vip_routing_sends_everyone_else_to_self_service_and_says_why() -> None:
    result = simulate(demo.VIP_ROUTING, {"traits": {"vip": False}}, [], T0, T0)
    assert result.enrollments[0]["routes"][0]["destination"] == "self_service"
    assert result.path[0]["detail"]["why"] == "no branch matched: default"


# --- abandoned cart ------------------------------------------------------------------------------

CART: list[dict[str, Any]] = [{"event": "Cart Abandoned", "at": _at(0), "properties": {"item_count": 3}}]


def test_cart_ordered_within_the_hour_exits_converted_and_sends_nothing() -> None:
    events = [*CART, {"event": "Order Completed", "at": _at(40)}]
    result = simulate(demo.ABANDONED_CART, {"traits": {"first_name": "Ada"}}, events, T0, T0 + timedelta(hours=5))
    assert result.messages == []
    assert result.enrollments[0]["status"] == "exited"
    assert result.enrollments[0]["converted"] is True
    assert result.timers[0]["fired"] is False


def test_cart_not_ordered_gets_a_push_after_an_hour() -> None:
    result = simulate(demo.ABANDONED_CART, {"traits": {"first_name": "Ada"}}, CART, T0, T0 + timedelta(hours=5))
    (push,) = result.messages
    assert push["channel"] == "push"
    assert push["at"] == _at(60)
    assert push["content"] == {"title": "Still thinking it over, Ada?", "body": "Your cart is waiting: 3 item(s)."}
    assert result.enrollments[0]["status"] == "completed"


def test_cart_push_failed_falls_back_to_sms_then_email() -> None:
    result = simulate(
        demo.ABANDONED_CART,
        {"traits": {}},
        CART,
        T0,
        T0 + timedelta(hours=5),
        outcomes={"push": "failed", "sms": "failed"},
    )
    assert [m["channel"] for m in result.messages] == ["push", "sms", "email"]
    # first_name is missing: the SMS and email use the default content, not a broken message.
    assert result.messages[1]["content"] == {"body": "Your cart is saved. Complete your order any time."}


def test_cart_push_without_an_outcome_times_out_to_sms() -> None:
    result = simulate(demo.ABANDONED_CART, {"traits": {}}, CART, T0, T0 + timedelta(hours=5), outcomes={"push": "none"})
    assert [(m["channel"], m["at"]) for m in result.messages] == [("push", _at(60)), ("sms", _at(90))]
    assert ("remind", "timeout") in _steps(result)


def test_cart_skips_a_channel_the_customer_cannot_receive() -> None:
    profile = {"unavailable": {"push": "no_address"}}
    result = simulate(demo.ABANDONED_CART, profile, CART, T0, T0 + timedelta(hours=5))
    assert [m["channel"] for m in result.messages] == ["sms"]
    tried = next(r for r in result.path if r["outcome"] == "delivering")["detail"]["channels"]
    assert tried[0] == {"channel": "push", "result": "unavailable", "reason": "no_address"}


def test_cart_held_by_the_contact_policy_sends_when_the_hold_ends() -> None:
    profile = {"contact": {"*": {"reason": "quiet_hours", "until": _at(600)}}}
    result = simulate(demo.ABANDONED_CART, profile, CART, T0, T0 + timedelta(hours=12))
    assert [(m["channel"], m["at"]) for m in result.messages] == [("push", _at(600))]
    held = next(r for r in result.path if r["outcome"] == "held")
    assert "quiet_hours" in held["detail"]["why"]


def test_cart_held_twice_on_one_visit_sends_after_the_second_hold() -> None:
    refusals = [{"reason": "quiet_hours", "until": _at(600)}, {"reason": "frequency_cap", "until": _at(900)}]
    result = simulate(demo.ABANDONED_CART, {"contact": {"*": refusals}}, CART, T0, T0 + timedelta(hours=20))
    assert [(m["channel"], m["at"]) for m in result.messages] == [("push", _at(900))]
    assert [r["detail"]["why"] for r in result.path if r["outcome"] == "held"] == [
        "contact policy: quiet_hours",
        "contact policy: frequency_cap",
    ]


def test_cart_reentry_respects_the_24_hour_cooldown() -> None:
    events = [*CART, {"event": "Cart Abandoned", "at": _at(180)}, {"event": "Cart Abandoned", "at": _at(25 * 60)}]
    result = simulate(demo.ABANDONED_CART, {}, events, T0, T0 + timedelta(hours=30))
    assert len(result.enrollments) == 2
    assert result.skipped_entries[0]["why"].startswith("cooldown until")


# --- form resume ---------------------------------------------------------------------------------

FORM: list[dict[str, Any]] = [{"event": "Form Started", "at": _at(0), "channel": "web"}]
LINKS = {"resume_url": "https://app.example.com/resume/abc"}


def test_form_started_on_the_web_and_not_sent_gets_a_push_with_the_resume_link() -> None:
    result = simulate(demo.FORM_RESUME, {}, FORM, T0, T0 + timedelta(hours=2), links=LINKS)
    (push,) = result.messages
    assert push["at"] == _at(30)
    assert push["content"]["url"] == "https://app.example.com/resume/abc"


def test_form_resume_push_failed_falls_back_to_sms_with_the_link() -> None:
    result = simulate(demo.FORM_RESUME, {}, FORM, T0, T0 + timedelta(hours=2), links=LINKS, outcomes={"push": "failed"})
    assert [m["channel"] for m in result.messages] == ["push", "sms"]
    assert "https://app.example.com/resume/abc" in result.messages[1]["content"]["body"]


def test_form_resume_without_a_link_uses_the_default_content() -> None:
    result = simulate(demo.FORM_RESUME, {}, FORM, T0, T0 + timedelta(hours=2))
    assert result.messages[0]["content"]["body"] == "Open the app to pick up where you left off."
    assert "url" not in result.messages[0]["content"]


def test_form_submitted_in_time_sends_nothing() -> None:
    events = [*FORM, {"event": "Form Submitted", "at": _at(10), "channel": "mobile"}]
    result = simulate(demo.FORM_RESUME, {}, events, T0, T0 + timedelta(hours=2), links=LINKS)
    assert result.messages == []
    assert result.enrollments[0]["converted"] is True


def test_form_started_on_another_channel_does_not_enter() -> None:
    result = simulate(demo.FORM_RESUME, {}, [{**FORM[0], "channel": "mobile"}], T0, T0 + timedelta(hours=2))
    assert result.enrollments == []
    assert result.skipped_entries[0]["why"] == "trigger condition false"


# --- the machine's rules -------------------------------------------------------------------------


def test_random_split_cohorts_follow_the_percentages() -> None:
    buckets = [cohort_bucket(f"enrollment-{i}", "split") for i in range(4000)]
    holdout = sum(b < 10 for b in buckets) / len(buckets)
    assert 0.08 < holdout < 0.12
    assert cohort_bucket("same", "split") == cohort_bucket("same", "split")


def test_a_split_path_of_a_thousandth_of_a_percent_takes_about_that_share() -> None:
    """A percent may be any number. A path of 0.001 % takes the buckets below 0.001: about 4 of
    400,000 enrollments (buckets in whole hundredths of a percent gave it the 0.01 % at 0.00,
    about 40)."""
    taken = sum(cohort_bucket(f"enrollment-{i}", "split") < 0.001 for i in range(400_000))

    assert taken <= 12


def test_a_local_window_across_midnight() -> None:
    late = datetime(2026, 3, 11, 23, 30, tzinfo=UTC)
    assert next_window_start(late, "UTC", "22:00", "06:00", None) is None
    noon = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    assert next_window_start(noon, "UTC", "22:00", "06:00", None) == datetime(2026, 3, 11, 22, 0, tzinfo=UTC)


def test_a_local_window_skips_to_an_allowed_weekday() -> None:
    saturday = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
    assert next_window_start(saturday, "UTC", "09:00", "17:00", [0, 1, 2, 3, 4]) == datetime(
        2026, 3, 16, 9, 0, tzinfo=UTC
    )


def test_simulation_runs_set_traits_emit_and_webhook_without_doing_them() -> None:
    definition = {
        "trigger": {"type": "api"},
        "start": "tag",
        "steps": {
            "tag": {"type": "set_traits", "traits": {"vip": True}, "next": "check"},
            "check": {
                "type": "branch",
                "branches": [{"condition": {"field": "traits.vip", "op": "equals", "value": True}, "next": "emit"}],
                "default": "done",
            },
            "emit": {"type": "emit_event", "event": "Welcomed", "next": "hook"},
            "hook": {"type": "webhook", "url": "https://crm.example.com/hook", "next": "done"},
            "done": {"type": "exit"},
        },
    }
    result = simulate(definition, {}, [], T0, T0)
    assert result.traits_set[0]["traits"] == {"vip": True}
    assert result.events_emitted[0]["event"] == "Welcomed"
    assert result.webhooks[0]["url"] == "https://crm.example.com/hook"
    assert _steps(result)[-1] == ("done", "completed")
