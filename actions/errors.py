"""Typed errors. Each carries one sentence a person can act on; `str(err)` is that sentence.

Callers catch `EdgeConsoleError` at the edge of the program (CLI, worker handler) and print
`str(err)` on one line: never a traceback for an operator's mistake.
"""

from __future__ import annotations


class EdgeConsoleError(Exception):
    """Base of every error this project raises on purpose."""


class ModelError(EdgeConsoleError):
    """A model artifact is missing, partial, corrupt or cannot be loaded."""


class ImageError(EdgeConsoleError):
    """An input image cannot be read or decoded."""


class CompileError(EdgeConsoleError):
    """A model could not be compiled; the message says why and what to change."""


class MessageError(EdgeConsoleError):
    """An MQTT payload does not follow the schema; the message says which field is wrong."""


class ConfigError(EdgeConsoleError):
    """A setting is missing or invalid; the message names the setting and the fix."""


# --- AWS failures (actions engineer): raised by actions.aws.translate from botocore errors. ---
class AwsError(EdgeConsoleError):
    """An AWS call failed for a reason the operator can act on; the message says how."""


class AccessDenied(AwsError):
    """The credentials in use lack a permission, or are missing or expired."""


class Throttled(AwsError):
    """AWS throttled the calls even after adaptive retries."""


class QuotaExceeded(AwsError):
    """An account or service quota stops the call."""


class NameConflict(AwsError):
    """A resource with that name already exists and is not ours to reuse."""


class NotFound(AwsError):
    """A resource the call needs does not exist."""


class MqttError(EdgeConsoleError):
    """An MQTT connection, publish or subscribe failed; the message says which broker and why."""
