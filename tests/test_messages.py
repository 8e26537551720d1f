"""The prediction message: the runbook's keys, our fields beside them, and a parser that says why."""

from __future__ import annotations

import json

import pytest

from actions.errors import MessageError
from actions.inference import Classification, Label
from actions.messages.prediction import build_prediction, encode, parse_prediction

# Verbatim from the runbook's component log (chapter 8): a subscriber must keep accepting it.
RUNBOOK = (
    '{"timestamp": "2022-08-15 03:38:45.282879+00:00", "inference-type": "image-classification", '
    '"inference-description": "Top 5 predictions with score 0.3 or above ", "inference-results": '
    '[{"Label": "slot, one-armed bandit", "Score": "83.41295623779297"}, {"Label": "mousetrap", '
    '"Score": "75.826416015625"}, {"Label": "comic book", "Score": "73.64051055908203"}, '
    '{"Label": "microphone, mike", "Score": "71.14073181152344"}, {"Label": "honeycomb", "Score": "68.3149185180664"}]}'
)


def _classification() -> Classification:
    return Classification((Label("tabby, tabby cat", 0.8341, 281), Label("tiger cat", 0.31, 282)), 1.25, 9.5)


def test_runbook_message_parses_without_our_fields():
    p = parse_prediction(RUNBOOK.encode())
    assert p.results[0] == ("slot, one-armed bandit", pytest.approx(83.41295623779297))
    assert len(p.results) == 5
    assert p.timestamp == "2022-08-15 03:38:45.282879+00:00"
    assert p.device is None and p.seq is None


def test_built_message_keeps_runbook_keys_in_order_and_round_trips():
    msg = build_prediction(_classification(), device="cam-1", model_name="efficientnet-lite0", model_version="1.0.0",
                           seq=7, top_k=5, threshold=0.3, source="chelsea.jpg")
    assert list(msg)[:4] == ["timestamp", "inference-type", "inference-description", "inference-results"]
    assert msg["inference-description"] == "Top 5 predictions with score 0.3 or above "
    assert msg["inference-results"][0] == {"Label": "tabby, tabby cat", "Score": repr(0.8341 * 100.0)}
    wire = encode(msg)
    assert json.loads(wire) == msg
    p = parse_prediction(wire)
    assert (p.device, p.seq, p.model_name, p.model_version, p.source) == ("cam-1", 7, "efficientnet-lite0", "1.0.0", "chelsea.jpg")
    assert p.top == ("tabby, tabby cat", pytest.approx(83.41))
    assert (p.preprocess_ms, p.inference_ms) == (1.25, 9.5)
    # The timestamp has the runbook's form: str() of an aware UTC datetime.
    assert p.timestamp.endswith("+00:00") and p.timestamp[10] == " "


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"inference-type": "image-classification", "inference-results": []}', "missing 'timestamp'"),
        (b'{"timestamp": "t", "inference-type": "object-detection", "inference-results": []}', "expected 'image-classification'"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": {}}', "must be a list"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [{"Label": "x"}]}', "'Label' and 'Score'"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [{"Label": "x", "Score": "high"}]}', "not a number"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [{"Label": "x", "Score": "250"}]}', "0..100"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [], "seq": -1}', "'seq'"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [], "device": 5}', "'device' must be a string"),
        (b'{"timestamp": "t", "inference-type": "image-classification", "inference-results": [], "latency-ms": {"inference": "9"}}', "must be a number"),
        (b"x" * (128 * 1024 + 1), "more than"),
    ],
)
def test_malformed_messages_are_rejected_with_the_reason(payload, reason):
    with pytest.raises(MessageError, match=None) as info:
        parse_prediction(payload)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
