"""The status message: build, encode, parse round trip and clear errors for bad payloads."""

from __future__ import annotations

import json

import pytest

from actions.errors import MessageError
from actions.messages.status import (build_offline, build_status, encode, parse_status,
                                     status_topic)


def test_roundtrip_keeps_every_field():
    msg = build_status(device="edge-1", state="running", model_name="efficientnet-lite0",
                       model_version="3", runtime="onnxruntime", images_per_s=41.66666,
                       preprocess_ms=(2.1, 3.0), inference_ms=(18.25, 21.9), outbox_depth=7,
                       dropped=2, seq=1234, images=1235, errors=1, uptime_s=3600.55,
                       last_error="bad.jpg:\n cannot identify image", connected=True)
    status = parse_status(encode(msg))
    assert status.device == "edge-1" and status.state == "running" and status.online
    assert status.model_version == "3" and status.runtime == "onnxruntime"
    assert status.images_per_s == pytest.approx(41.667)
    assert status.preprocess_ms == (2.1, 3.0) and status.inference_ms == (18.25, 21.9)
    assert (status.outbox_depth, status.dropped, status.seq, status.images) == (7, 2, 1234, 1235)
    assert status.last_error == "bad.jpg: cannot identify image"  # one line
    assert status.connected is True


def test_offline_will_parses_as_offline():
    status = parse_status(encode(build_offline("edge-9")))
    assert status.state == "offline" and not status.online and status.device == "edge-9"


def test_topic_template():
    assert status_topic("edge-1") == "edge-console/edge-1/status"
    assert status_topic("d", "fleet/{device}/health") == "fleet/d/health"


@pytest.mark.parametrize("payload, words", [
    (b"\xff\xfe", "UTF-8"),
    ("{not json", "not JSON"),
    ("[]", "JSON object"),
    (json.dumps({"type": "prediction"}), "'type'"),
    (json.dumps({"type": "status", "device": "d"}), "missing 'state'"),
    (json.dumps({"type": "status", "device": "d", "state": "dancing"}), "'state'"),
    (json.dumps({"type": "status", "device": "d", "state": "running", "outbox-depth": -1}), "outbox-depth"),
    (json.dumps({"type": "status", "device": "d", "state": "running",
                 "latency-ms": {"inference": {"p50": "fast"}}}), "latency-ms.inference.p50"),
])
def test_bad_payloads_say_what_is_wrong(payload, words):
    with pytest.raises(MessageError, match=words.replace("(", r"\(")):
        parse_status(payload)


def test_unknown_state_is_refused_when_building():
    with pytest.raises(MessageError, match="state"):
        build_status(device="d", state="sleeping")
