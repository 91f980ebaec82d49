from typing import Any, Iterable, Mapping as MappingT, Optional, Tuple, TypedDict, Union

Headers = Union[MappingT[str, str], Iterable[Tuple[str, str]]]

class ParsedEvent(TypedDict, total=False):
    event: dict[str, Any]
    """The event's own fields, as HubSpot sent them."""
    dedupe_key: str
    """Stable across HubSpot's retries (``hs1_{portal}_{app}_{subscription}_{event}_{object}_{occurredAt}``)."""
    subscription_type: str
    object_type: str
    portal_id: int
    object_id: Optional[int]
    verdict: str
    """With a filter: ``keep``, or why it is dropped (``not_included``, ``excluded``, ``own_change``)."""
    error: str
    """Instead of the above, for an element that is not an event: its code."""
    raw: str

def verify_signature(
    secret: str,
    *,
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    now_ms: Optional[int] = None,
    allow_legacy: bool = False,
    max_age_ms: int = 300_000,
) -> str:
    """Verify a HubSpot request's signature in constant time; returns ``"v3"`` (or ``"v2"``,
    ``"v1"`` with ``allow_legacy``). ``url`` is the full URL HubSpot called. Raises
    :class:`hubspot_edge.SignatureError`."""

def sign_v3(secret: str, *, method: str, url: str, body: bytes, timestamp_ms: int) -> str: ...
def sign_v2(secret: str, *, method: str, url: str, body: bytes) -> str: ...
def sign_v1(secret: str, *, body: bytes) -> str: ...
def parse_events(body: bytes, filter: Optional[Filter] = None) -> list[ParsedEvent]:
    """Parse a webhook body; raises :class:`hubspot_edge.EventError` when it is not a JSON array."""

class Filter:
    """The Worker's ``FILTER_RULES``: ``{"include": [...], "exclude": [...], "ignoreOwnChanges": {...}}``."""
    def __init__(self, rules: str) -> None: ...

class Mapping:
    """The Worker's ``ENRICHMENT_MAP``: ``{"objects": {"contacts": {"fields": [...]}}}``."""
    def __init__(self, config: str) -> None: ...
    def to_record(self, object_type: str, properties: MappingT[str, Optional[str]]) -> dict[str, Any]: ...
    def to_hubspot(self, object_type: str, record: MappingT[str, Any]) -> dict[str, str]: ...
    def diff(self, object_type: str, old: MappingT[str, Any], new: MappingT[str, Any]) -> list[dict[str, Any]]: ...

class StandardWebhook:
    """A Standard Webhooks secret (``whsec_…``)."""
    def __init__(self, secret: str) -> None: ...
    def sign(self, msg_id: str, timestamp_s: int, body: bytes) -> str: ...
    def verify(self, headers: Headers, body: bytes, now_s: Optional[int] = None, tolerance_s: int = 300) -> None: ...
