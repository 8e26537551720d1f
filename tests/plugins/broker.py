"""Pytest fixtures for a real MQTT broker (fixtures/broker.py).

- `mqtt_broker`: one broker for the whole session, plain on `.port` and TLS (client certificate
  required) on `.tls_port`. Share it; do not stop or restart it.
- `fresh_broker`: a broker of your own for one test, free to `.restart()`, `.stop()` or `.kill()`.

Both are mosquitto when installed (`make broker`), else the embedded amqtt broker (MQTT 3.1.1 only;
tests that need MQTT 5 skip on `broker.kind != "mosquitto"`).
"""

from __future__ import annotations

import pytest

from fixtures.broker import start_broker


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    """A session-wide broker on loopback with a plain and a TLS listener."""
    broker = start_broker(tmp_path_factory.mktemp("mqtt-broker"), tls=True)
    yield broker
    broker.stop()


@pytest.fixture
def fresh_broker(tmp_path_factory):
    """A broker for one test only: restart, stop or kill it as the test needs."""
    broker = start_broker(tmp_path_factory.mktemp("mqtt-broker-own"), tls=True)
    yield broker
    broker.stop()
