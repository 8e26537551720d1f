"""MQTT transports behind one interface: paho (plain/TLS), AWS IoT Core (MQTT5, mTLS), Greengrass IPC.

    from actions.mqtt import MqttSettings, open_transport
    transport = open_transport(MqttSettings(host="127.0.0.1", port=1883))
    transport.connect(timeout=10)
    transport.publish("gg/sageMakerEdgeManager/image-classification", payload).result(10)  # PUBACK
    transport.subscribe("edge-console/+/status", lambda topic, payload: ...)
    transport.close()

Heavy clients (paho, awscrt, the IPC client) are imported when a transport is built.
"""

from __future__ import annotations

import os
from typing import Mapping

from actions.errors import ConfigError, MqttError
from actions.mqtt.base import MessageCallback, MqttSettings, Transport, Will, is_loopback, topic_matches

__all__ = ["MessageCallback", "MqttError", "MqttSettings", "Transport", "Will", "is_loopback",
           "open_transport", "select_transport", "topic_matches", "TRANSPORTS", "GG_SOCKET_ENV"]

TRANSPORTS = ("auto", "mqtt", "iot-core", "greengrass-ipc")
GG_SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"


def select_transport(settings: MqttSettings, environ: Mapping[str, str] | None = None,
                     *, host_given: bool = False) -> str:
    """Decide which transport to use.

    An explicit `settings.transport` wins. With "auto": a broker host given explicitly (for example
    EDGE_CLIENT_MQTT_HOST from the sandbox's core device) means "mqtt"; else running as a Greengrass
    component (the nucleus's IPC socket variable is set) means "greengrass-ipc"; else an
    `iot_endpoint` means "iot-core"; else "mqtt".

    Args:
        settings: the connection settings.
        environ: the environment to look at (default os.environ).
        host_given: the operator set the broker host explicitly.

    Returns:
        One of "mqtt", "iot-core", "greengrass-ipc".

    Raises:
        ConfigError: `settings.transport` is not one of TRANSPORTS.
    """
    environ = os.environ if environ is None else environ
    kind = (settings.transport or "auto").strip().lower()
    if kind not in TRANSPORTS:
        raise ConfigError(f"transport {settings.transport!r} is not one of {', '.join(TRANSPORTS)}: "
                          "set transport (EDGE_CLIENT_TRANSPORT) to one of them")
    if kind != "auto":
        return kind
    if host_given:
        return "mqtt"
    if environ.get(GG_SOCKET_ENV):
        return "greengrass-ipc"
    if settings.iot_endpoint:
        return "iot-core"
    return "mqtt"


def open_transport(settings: MqttSettings, *, will: Will | None = None, kind: str | None = None,
                   clean_session: bool = True) -> Transport:
    """Build (not yet connect) the transport `kind`, or the one `select_transport` picks.

    Args:
        settings: the connection settings.
        will: a last-will message (ignored by Greengrass IPC, which has none).
        kind: "mqtt", "iot-core" or "greengrass-ipc"; None selects automatically.
        clean_session: for "mqtt", start a clean session (False keeps the broker-side session).

    Returns:
        The Transport; call `connect()` next.

    Raises:
        ConfigError: a setting is missing or invalid (the message names it).
    """
    kind = kind or select_transport(settings)
    if kind == "mqtt":
        from actions.mqtt.paho_client import PahoTransport

        return PahoTransport(settings, will=will, clean_session=clean_session)
    if kind == "iot-core":
        from actions.mqtt.iot_core import IotCoreTransport

        return IotCoreTransport(settings, will=will)
    if kind == "greengrass-ipc":
        from actions.mqtt.greengrass_ipc import GreengrassIpcTransport

        return GreengrassIpcTransport()
    raise ConfigError(f"transport {kind!r} is not one of {', '.join(TRANSPORTS[1:])}")
