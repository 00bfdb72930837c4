"""The Bedrock intent parser (shared/adapters/bedrock.py) against botocore's own model of
the bedrock-runtime service, through botocore's Stubber: each request is validated and
serialised as the real client would send it, and each canned response is checked against
the service's output shape. Bedrock itself cannot be called from here (no AWS account or
network in the test environment), so what a real model answers is not tested; what the
adapter does with an answer, and with every kind of failure, is."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from shared import intent
from shared.adapters.bedrock import SYSTEM, BedrockIntentParser

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
DATASETS = (
    intent.DatasetRef(
        id="ds-1", name="cats", format="imagefolder", status="ready", classes=("a", "b")
    ),
    intent.DatasetRef(id="ds-2", name="fruit-boxes", format="yolo", status="ready"),
)
CTX = intent.ParseContext(DATASETS, ("dataset",), "ko")
TEXT = "ResNet50으로 고양이 3종류 분류하는 모델 만들어줘"


@pytest.fixture
def client():
    session = botocore.session.get_session()
    return session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def tool_response(tool_input, name=intent.INTENT_TOOL):
    return {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"text": "Recording the intent."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": name, "input": tool_input}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 200, "outputTokens": 40, "totalTokens": 240},
        "metrics": {"latencyMs": 420},
    }


def expected_request():
    return {
        "modelId": MODEL,
        "system": [{"text": SYSTEM}],
        "messages": ANY,
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": intent.INTENT_TOOL,
                        "description": ANY,
                        "inputSchema": {"json": intent.INTENT_SCHEMA},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": intent.INTENT_TOOL}},
        },
        "inferenceConfig": {"maxTokens": 1024, "temperature": 0},
    }


def test_the_request_forces_the_intent_tool_whose_schema_is_the_training_config(client):
    parser = BedrockIntentParser(client, MODEL)
    request = parser.request(TEXT, CTX)
    schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert schema is intent.INTENT_SCHEMA
    assert {"task_type", "model", "num_classes", "class_names", "dataset", "epochs"} <= set(
        schema["properties"]
    )
    assert schema["properties"]["task_type"]["enum"] == ["classification", "detection"]
    prompt = request["messages"][0]["content"][0]["text"]
    # the user's dataset names (never ids), the question asked last, the message
    assert '"cats", "fruit-boxes"' in prompt and "dataset" in prompt and TEXT in prompt
    assert "ds-1" not in prompt
    with Stubber(client) as stub:  # the request passes botocore's validation of Converse
        stub.add_response("converse", tool_response({}), expected_request())
        parser.parse(TEXT, CTX)
        stub.assert_no_pending_responses()


def test_a_tool_call_is_read_and_checked_like_the_rules_reading(client):
    parser = BedrockIntentParser(client, MODEL)
    answer = {
        "task_type": "classification",
        "model": "ResNet-50",
        "num_classes": 3,
        "class_names": ["치즈", "나비", "츄르"],
        "dataset": "cats",
        "epochs": 20,
        "learning_rate": 0.0005,
        "confidence": 0.93,
    }
    with Stubber(client) as stub:
        stub.add_response("converse", tool_response(answer), expected_request())
        parsed = parser.parse(TEXT, CTX)
    assert parsed.language == "ko" and parsed.confidence == 0.93
    got = parsed.intent
    assert (got.task_type, got.model, got.framework) == ("classification", "resnet50", "timm")
    assert got.class_names == ["치즈", "나비", "츄르"] and got.num_classes == 3
    assert (got.dataset_id, got.epochs, got.learning_rate) == ("ds-1", 20, 0.0005)


def test_what_the_model_makes_up_is_not_trusted(client):
    parser = BedrockIntentParser(client, MODEL)
    answer = {
        "model": "resnet999",
        "dataset": "bobs-birds",  # someone else's, or nobody's: never resolved
        "epochs": 5000,
        "batch_size": "lots",
        "task_type": "segmentation",
    }
    with Stubber(client) as stub:
        stub.add_response("converse", tool_response(answer), expected_request())
        parsed = parser.parse("train resnet999 on bobs-birds", CTX)
    assert parsed.intent.model is None and parsed.unknown_model == "resnet999"
    assert parsed.intent.dataset_id is None and parsed.dataset_mention == "bobs-birds"
    assert parsed.intent.epochs is None and parsed.invalid == {"epochs": "5000"}
    assert parsed.intent.batch_size is None and parsed.intent.task_type is None


@pytest.mark.parametrize(
    "failure",
    ["ThrottlingException", "AccessDeniedException", "ModelTimeoutException", "no tool call"],
)
def test_any_failure_falls_back_to_the_rules(client, failure, caplog):
    parser = BedrockIntentParser(client, MODEL)
    with Stubber(client) as stub:
        if failure == "no tool call":
            stub.add_response(
                "converse",
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": "Sure!"}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                    "metrics": {"latencyMs": 1},
                },
                expected_request(),
            )
        else:
            stub.add_client_error(
                "converse", service_error_code=failure, service_message="no", http_status_code=400
            )
        parsed = parser.parse(TEXT, CTX)
        stub.assert_no_pending_responses()
    assert parsed == intent.parse(TEXT, CTX)  # exactly what the rules read
    assert parsed.intent.model == "resnet50" and parsed.intent.num_classes == 3
    assert "falls back" in caplog.text or "by rules" in caplog.text


def test_an_answer_that_is_not_an_object_falls_back(client):
    parser = BedrockIntentParser(client, MODEL)
    with Stubber(client) as stub:
        stub.add_response("converse", tool_response(["resnet50"]), expected_request())
        parsed = parser.parse(TEXT, CTX)
    assert parsed == intent.parse(TEXT, CTX)


def test_an_unreachable_service_falls_back(client):
    """No stub: the call fails as an unstubbed one does (as a timeout or no network would)."""
    with Stubber(client):
        parsed = BedrockIntentParser(client, MODEL).parse("yolov8n detector", CTX)
    assert parsed.intent.model == "yolov8n" and parsed.intent.task_type == "detection"
