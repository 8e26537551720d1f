"""Greengrass IPC: publish through the nucleus's own AWS IoT Core connection (`publish_to_iot_core`).

Selected when the agent runs as a Greengrass component (the nucleus sets
AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT). The component's recipe must grant
`aws.greengrass#PublishToIoTCore` (and `SubscribeToIoTCore` for subscriptions) on its topics.

Untested here: there is no nucleus on the build machines; only the selection logic is tested.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

from actions.errors import MqttError
from actions.mqtt.base import MessageCallback, Transport, closed_error, deliver, failed_future

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
QOS = {0: "0", 1: "1"}  # awsiot.greengrasscoreipc.model.QOS values


class GreengrassIpcTransport(Transport):
    """Publishes to AWS IoT Core through the local Greengrass nucleus (clientv2, awsiotsdk)."""

    kind = "greengrass-ipc"

    def __init__(self) -> None:
        super().__init__()
        self._client = None
        self._lock = threading.Lock()
        self._closed = False
        self._pending: set[concurrent.futures.Future] = set()
        self._streams: list = []

    def describe(self) -> str:
        return f"Greengrass IPC ({os.environ.get(SOCKET_ENV, 'no socket')})"

    def connect(self, timeout: float | None = 10.0) -> None:
        if self._client is not None:
            return
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        try:
            # The nucleus's connection is its business: once the IPC socket is up, we are "connected".
            self._client = GreengrassCoreIPCClientV2()
        except Exception as exc:
            raise MqttError(f"cannot reach the Greengrass nucleus over IPC ({exc}): is the component "
                            "running under Greengrass with aws.greengrass.ipc.mqttproxy access?") from None
        self._set_connected(True)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> concurrent.futures.Future:
        if self._closed:
            return failed_future(closed_error(self.kind))
        if self._client is None:
            return failed_future(MqttError("Greengrass IPC transport is not connected: call connect() first"))
        out: concurrent.futures.Future = concurrent.futures.Future()
        try:
            ipc_future = self._client.publish_to_iot_core_async(
                topic_name=topic, qos=QOS.get(qos, "1"), payload=payload, retain=retain)
        except Exception as exc:
            return failed_future(MqttError(f"Greengrass IPC publish to {topic} failed: {exc}"))
        with self._lock:
            self._pending.add(out)

        def done(f: concurrent.futures.Future) -> None:
            with self._lock:
                self._pending.discard(out)
            if out.done():
                return
            exc = f.exception()
            if exc is not None:
                out.set_exception(MqttError(f"Greengrass IPC publish to {topic} failed: {exc}"))
            else:
                out.set_result(None)

        ipc_future.add_done_callback(done)
        return out

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        if self._client is None:
            raise MqttError("Greengrass IPC transport is not connected: call connect() first")

        def on_event(event) -> None:
            message = getattr(event, "message", None)
            if message is not None:
                deliver(callback, message.topic_name, bytes(message.payload or b""))

        _resp, operation = self._client.subscribe_to_iot_core(
            topic_name=topic_filter, qos=QOS.get(qos, "1"), on_stream_event=on_event)
        self._streams.append(operation)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        for op in self._streams:
            try:
                op.close()
            except Exception:  # already closed by the nucleus
                pass
        if self._client is not None:
            self._client.close()
        self._set_connected(False)
        with self._lock:
            pending, self._pending = list(self._pending), set()
        for fut in pending:
            if not fut.done():
                fut.set_exception(closed_error(self.kind))
