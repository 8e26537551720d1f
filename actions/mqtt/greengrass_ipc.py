"""Greengrass IPC: publish through the nucleus's own AWS IoT Core connection (`publish_to_iot_core`).

Selected when the agent runs as a Greengrass component (the nucleus sets
AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT and SVCUID). The component's recipe must grant
`aws.greengrass#PublishToIoTCore` (and `SubscribeToIoTCore` for subscriptions) on its topics in
its `accessControl` for `aws.greengrass.ipc.mqttproxy`.

"Acknowledged" here means the nucleus accepted the message into its spooler, not that AWS IoT
Core has it: with the nucleus's default in-memory spooler, a nucleus restart loses what it holds.

When the IPC connection drops (the nucleus restarts or closes it), the transport reports itself
disconnected and reconnects with a backoff; publishes made meanwhile, and the ones the drop
failed, wait here and go out after the reconnect, in order. Tested against
`fixtures.greengrass_ipc`, a stand-in that speaks the nucleus's event-stream RPC protocol.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import threading

from actions.errors import ConfigError, MqttError
from actions.mqtt.base import MessageCallback, Transport, closed_error, deliver, failed_future

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
TOKEN_ENV = "SVCUID"
QOS = {0: "0", 1: "1"}  # awsiot.greengrasscoreipc.model.QOS values
RECONNECT_MIN, RECONNECT_MAX = 0.5, 30.0  # seconds between attempts to reach the nucleus again


def _refusal(topic: str, exc: BaseException) -> str | None:
    """The one-line reason when the nucleus refused a publish, or None when the connection failed it."""
    from awsiot.greengrasscoreipc.model import GreengrassCoreIPCError, UnauthorizedError

    said = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, UnauthorizedError):
        return (f"the component may not publish to {topic}: add the topic to its recipe's accessControl "
                f"for aws.greengrass.ipc.mqttproxy (aws.greengrass#PublishToIoTCore); the nucleus said: {said}")
    if isinstance(exc, GreengrassCoreIPCError):
        return f"the nucleus refused the message to {topic}: {said}"
    return None


class GreengrassIpcTransport(Transport):
    """Publishes to AWS IoT Core through the local Greengrass nucleus (clientv2, awsiotsdk)."""

    kind = "greengrass-ipc"

    def __init__(self, socket_path: str | None = None, token: str | None = None) -> None:
        """`socket_path` and `token` default to what the nucleus puts in a component's environment.

        Raises:
            ConfigError: neither given nor in the environment (not running as a component).
        """
        super().__init__()
        self._socket_path = socket_path or os.environ.get(SOCKET_ENV)
        self._token = token or os.environ.get(TOKEN_ENV)
        if not self._socket_path or not self._token:
            raise ConfigError(f"Greengrass IPC needs {SOCKET_ENV} and {TOKEN_ENV}, which the nucleus sets "
                              "for a component it runs: run edge-client as a Greengrass component, or set "
                              "transport to mqtt or iot-core")
        self._client = None
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._pending: set[concurrent.futures.Future] = set()  # with the nucleus, not yet answered
        # (order, topic, payload, qos, retain, future), in publish order; `_lock` guards it. Never
        # held while calling into the IPC client, whose thread calls back into us.
        self._waiting: collections.deque = collections.deque()
        self._order = itertools.count()
        self._send_lock = threading.Lock()  # one thread hands messages to the client at a time, in order
        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._streams: list = []
        self._wake = threading.Event()
        self._generation = 0  # which connection is the current one: a late drop of an old one is ignored

    def describe(self) -> str:
        return f"Greengrass IPC ({self._socket_path})"

    # -- the connection ---------------------------------------------------------------------------
    def connect(self, timeout: float | None = 10.0) -> None:
        if self._started:
            return
        self._started = True
        error = None
        try:
            self._open(timeout if timeout is not None else 10.0)
        except MqttError as exc:
            error = exc
            if timeout is not None:
                self._started = False
                raise
        self._set_connected(error is None, str(error) if error else None)
        threading.Thread(target=self._keep_connected, name="greengrass-ipc", daemon=True).start()

    def _open(self, timeout: float) -> None:
        import awsiot.greengrasscoreipc as ipc
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        socket_path, token = self._socket_path, self._token
        transport = self
        with self._lock:
            self._generation += 1
            generation = self._generation

        class Lifecycle(ipc.LifecycleHandler):
            def on_disconnect(self, reason) -> None:
                transport._lost(reason, generation)

            def on_error(self, error) -> bool:
                return True  # a protocol error: close, and reconnect

        try:
            client = ipc.connect(ipc_socket=socket_path, authtoken=token, lifecycle_handler=Lifecycle(),
                                 timeout=timeout)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if "denied" in reason.lower():
                reason += " (the auth token was refused: is SVCUID the one the nucleus gave this component?)"
            raise MqttError(f"cannot reach the Greengrass nucleus over IPC at {socket_path} ({reason}): is the "
                            "component running under Greengrass with aws.greengrass.ipc.mqttproxy access?") from None
        with self._lock:
            self._client = GreengrassCoreIPCClientV2(client=client)
            subs = list(self._subs.items())
        for topic_filter, (callback, qos) in subs:
            self._subscribe_now(topic_filter, callback, qos)

    def _lost(self, reason, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # an earlier connection's late news
            self._client = None
            self._streams = []
        if not self._closed:
            self._set_connected(False, f"lost the Greengrass IPC connection ({reason}); reconnecting")
            self._wake.set()

    def _keep_connected(self) -> None:
        """Reconnect after a drop, with a backoff; send what waited once connected."""
        delay = RECONNECT_MIN
        while not self._closed:
            if self.connected:
                delay = RECONNECT_MIN
                self._flush()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._open(10.0)
            except MqttError as exc:
                self._set_connected(False, str(exc))
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(2 * delay, RECONNECT_MAX)
                continue
            if self._closed:
                return
            self._set_connected(True)

    # -- publishing -------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> concurrent.futures.Future:
        if self._closed:
            return failed_future(closed_error(self.kind))
        out: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._waiting.append((next(self._order), topic, payload, qos, retain, out))
        if self.connected:
            self._flush()
        if self._closed:  # closed meanwhile: fail what close() may not have seen
            self._fail_waiting()
        return out

    def _flush(self) -> None:
        """Send what waits, in order, while connected."""
        with self._send_lock:
            while True:
                with self._lock:
                    if not self._waiting or self._client is None or self._closed:
                        return
                    item = self._waiting.popleft()
                    client = self._client
                    self._pending.add(item[5])
                _order, topic, payload, qos, retain, _out = item
                try:
                    ipc_future = client.publish_to_iot_core_async(
                        topic_name=topic, qos=QOS.get(qos, "1"), payload=payload, retain=retain)
                except Exception:  # the connection closed under us: it waits for the reconnect
                    self._requeue(item)
                    return
                ipc_future.add_done_callback(lambda f, item=item: self._answered(item, f))

    def _requeue(self, item: tuple) -> None:
        with self._lock:
            self._pending.discard(item[5])
            if item[0] < (self._waiting[0][0] if self._waiting else float("inf")):
                self._waiting.appendleft(item)
            else:  # failed out of order (answers come on the client's thread): keep publish order
                self._waiting = collections.deque(sorted([*self._waiting, item], key=lambda i: i[0]))

    def _answered(self, item: tuple, f: concurrent.futures.Future) -> None:
        out = item[5]
        if out.done():
            return
        exc = f.exception()
        if exc is None:
            with self._lock:
                self._pending.discard(out)
            out.set_result(None)
            return
        refusal = _refusal(item[1], exc)
        if refusal is not None or self._closed:
            with self._lock:
                self._pending.discard(out)
            out.set_exception(MqttError(refusal) if refusal else closed_error(self.kind))
            return
        # The connection failed it, not the nucleus: it may or may not have arrived. It goes
        # again after the reconnect (at least once), in its place.
        self._requeue(item)
        self._wake.set()

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic_filter] = (callback, qos)
            connected = self._client is not None
        if connected:
            self._subscribe_now(topic_filter, callback, qos)

    def _subscribe_now(self, topic_filter: str, callback: MessageCallback, qos: int) -> None:
        def on_event(event) -> None:
            message = getattr(event, "message", None)
            if message is not None:
                deliver(callback, message.topic_name, bytes(message.payload or b""))

        with self._lock:
            client = self._client
        if client is None:
            return  # subscribed again after the reconnect
        try:
            _resp, operation = client.subscribe_to_iot_core(
                topic_name=topic_filter, qos=QOS.get(qos, "1"), on_stream_event=on_event)
        except Exception as exc:
            refusal = _refusal(topic_filter, exc)
            if refusal is not None:
                raise MqttError(refusal.replace("publish to", "subscribe to").replace(
                    "PublishToIoTCore", "SubscribeToIoTCore")) from None
            return  # the connection dropped: subscribed again after the reconnect
        with self._lock:
            self._streams.append(operation)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with self._lock:
            streams, self._streams = self._streams, []
            client, self._client = self._client, None
        for op in streams:
            try:
                op.close()
            except Exception:  # already closed by the nucleus
                pass
        if client is not None:
            client.close()
        self._set_connected(False)
        with self._lock:
            pending, self._pending = list(self._pending), set()
        for fut in pending:
            if not fut.done():
                fut.set_exception(closed_error(self.kind))
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        with self._lock:
            waiting = [item[5] for item in self._waiting]
            self._waiting.clear()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(closed_error(self.kind))
