"""Exceptions raised by hubspot_edge. Each carries the core's stable ``code``."""

from __future__ import annotations


class HubSpotEdgeError(Exception):
    """Base class: ``code`` is stable (match on it), ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignatureError(HubSpotEdgeError):
    """A HubSpot signature did not verify: ``signature_mismatch``, ``timestamp_expired``,
    ``timestamp_in_future``, ``signature_missing``, ``legacy_signature_rejected``, …"""


class EventError(HubSpotEdgeError):
    """The body is not a JSON array of events: ``batch_malformed``."""


class ConfigError(HubSpotEdgeError):
    """A filter, field map or secret could not be read: ``filter_config_invalid``,
    ``mapping_config_invalid``, ``webhook_secret_invalid``, …"""


class MappingError(HubSpotEdgeError):
    """A value the field map refuses (``mapping_value_invalid``, …) or an unknown object type
    (``mapping_object_unknown``)."""


class WebhookError(HubSpotEdgeError):
    """A Standard Webhooks delivery did not verify: ``webhook_signature_mismatch``,
    ``webhook_timestamp_out_of_window``, ``webhook_timestamp_invalid``."""
