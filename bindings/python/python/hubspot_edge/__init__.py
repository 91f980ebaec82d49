"""hubspot-edge's Rust core for Python: verify HubSpot webhooks (v1, v2, v3) in constant time,
parse and filter events, dedupe keys, map and diff records, Standard Webhooks.

    import hubspot_edge as he
    he.verify_signature(secret, method="POST", url=url, headers=headers, body=body)
    for e in he.parse_events(body):
        print(e["dedupe_key"], e["subscription_type"])
"""

from .errors import (
    ConfigError,
    EventError,
    HubSpotEdgeError,
    MappingError,
    SignatureError,
    WebhookError,
)
from ._core import (
    Filter,
    Mapping,
    StandardWebhook,
    parse_events,
    sign_v1,
    sign_v2,
    sign_v3,
    verify_signature,
)

__all__ = [
    "ConfigError",
    "EventError",
    "Filter",
    "HubSpotEdgeError",
    "Mapping",
    "MappingError",
    "SignatureError",
    "StandardWebhook",
    "WebhookError",
    "parse_events",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "verify_signature",
]
