"""The three journeys of the demo, and the segment they use, as definitions.

The seed command loads them; the tests simulate them on a virtual clock. Pure data: no Django.
"""

from typing import Any

VIP_SEGMENT: dict[str, Any] = {
    "key": "vip",
    "name": "VIP customers",
    "description": "Customers whose profile says they are VIP (trait `vip` true, or `tier` vip).",
    "condition": {
        "any": [
            {"field": "traits.vip", "op": "equals", "value": True},
            {"field": "traits.tier", "op": "equals", "value": "vip"},
        ]
    },
}

VIP_ROUTING: dict[str, Any] = {
    "trigger": {"type": "decide", "placement": "support_entry"},
    "entry": {"reentry": "every_time"},
    "start": "is_vip",
    "steps": {
        "is_vip": {
            "type": "branch",
            "name": "VIP?",
            "branches": [
                {
                    "name": "VIP segment or trait",
                    "condition": {"any": [{"segment": "vip"}, {"field": "traits.vip", "op": "equals", "value": True}]},
                    "next": "premium",
                }
            ],
            "default": "self_service",
        },
        "premium": {
            "type": "route",
            "destination": "premium_support",
            "content": {"headline": "A specialist is ready for you", "queue": "premium", "wait_minutes": 1},
        },
        "self_service": {
            "type": "route",
            "destination": "self_service",
            "content": {"headline": "Find answers in our help centre", "url": "https://help.example.com"},
        },
    },
    "default_decision": {
        "route": "self_service",
        "content": {"headline": "Find answers in our help centre", "url": "https://help.example.com"},
    },
}

ABANDONED_CART: dict[str, Any] = {
    "trigger": {"type": "event", "event": "Cart Abandoned"},
    "entry": {"reentry": "cooldown", "cooldown": {"hours": 24}},
    "exit": [{"event": "Order Completed", "converted": True}],
    "start": "wait_for_order",
    "steps": {
        "wait_for_order": {
            "type": "wait_for_event",
            "name": "Give them an hour to order",
            "event": "Order Completed",
            "timeout": {"hours": 1},
            "next": "done",
            "on_timeout": "remind",
        },
        "remind": {
            "type": "message",
            "name": "Cart reminder: push, then SMS, then email",
            "channels": ["push", "sms", "email"],
            "purpose": "marketing",
            "priority": "normal",
            "content": {
                "push": {
                    "title": "Still thinking it over, {{ profile.first_name }}?",
                    "body": "Your cart is waiting: {{ event.properties.item_count }} item(s).",
                },
                "sms": {"body": "{{ profile.first_name }}, your cart is saved. Complete your order any time."},
                "email": {
                    "subject": "You left something in your cart",
                    "body": "Hi {{ profile.first_name }}, your cart is still here whenever you are ready.",
                },
            },
            "default_content": {
                "push": {"title": "Still thinking it over?", "body": "Your cart is waiting."},
                "sms": {"body": "Your cart is saved. Complete your order any time."},
                "email": {
                    "subject": "You left something in your cart",
                    "body": "Hi, your cart is still here whenever you are ready.",
                },
            },
            "await": "sent",
            "outcome_timeout": {"minutes": 30},
            "on_capped": "hold",
            "next": "done",
            "on_failed": "done",
        },
        "done": {"type": "exit"},
    },
}

FORM_RESUME: dict[str, Any] = {
    "trigger": {
        "type": "event",
        "event": "Form Started",
        "condition": {"field": "event.channel", "op": "equals", "value": "web"},
    },
    "entry": {"reentry": "every_time"},
    "exit": [{"event": "Form Submitted", "converted": True}],
    "start": "wait_for_submit",
    "steps": {
        "wait_for_submit": {
            "type": "wait_for_event",
            "name": "Wait for the form to be sent",
            "event": "Form Submitted",
            "timeout": {"minutes": 30},
            "next": "done",
            "on_timeout": "remind",
        },
        "remind": {
            "type": "message",
            "name": "Resume on mobile: push, else SMS",
            "channels": ["push", "sms"],
            "purpose": "marketing",
            "priority": "high",
            "content": {
                "push": {
                    "title": "Finish your form on the go",
                    "body": "Pick up where you left off.",
                    "url": "{{ links.resume_url }}",
                },
                "sms": {"body": "Pick up your form where you left off: {{ links.resume_url }}"},
            },
            "default_content": {
                "push": {"title": "Finish your form on the go", "body": "Open the app to pick up where you left off."},
                "sms": {"body": "Open the app to pick up your form where you left off."},
            },
            "await": "sent",
            "outcome_timeout": {"minutes": 15},
            "on_capped": "hold",
            "next": "done",
            "on_failed": "done",
        },
        "done": {"type": "exit"},
    },
}

# key -> (name, description, definition)
JOURNEYS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "vip-routing": (
        "VIP routing",
        "Support entry: VIP customers go to premium support, everyone else to self-service.",
        VIP_ROUTING,
    ),
    "abandoned-cart": (
        "Abandoned cart recovery",
        "Wait an hour for the order; else remind by push, then SMS, then email, falling back on what happened.",
        ABANDONED_CART,
    ),
    "form-resume": (
        "Form resume",
        "A form begun on the web and not sent: a reminder on mobile with a resume link from the session API.",
        FORM_RESUME,
    ),
}
