"""Seed 003's chat over HTTP (and the started workflow over WebSocket) against the local
stack: a chat in Korean that asks, is answered, completes and starts a workflow that
trains to ``training_complete``, and the same in English (edited by ``edit_config``) and
Japanese (a detector); sessions read back, kept across a
restart and deleted; another user's session and datasets never reached; bad input
refused with nothing stored."""

from __future__ import annotations

import re

import httpx
import pytest

pytest.importorskip("timm")

from tests import datasets as make
from tests.conftest import Client, start_stack, stop_stack
from tests.e2e.live import follow

pytestmark = pytest.mark.e2e

SESSION_ID = re.compile(r"sess_[0-9a-f]{24}")


def upload(client: Client, name: str, data: bytes) -> dict:
    r = client.http.post("/datasets", data={"name": name}, files=[("files", ("d.zip", data))])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "ready"
    return r.json()


def say(client: Client, message: str | None = None, session: str | None = None, **extra):
    body = {"message": message, **extra}
    if session:
        body["session_id"] = session
    return client.http.post("/chat/message", json=body)


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_korean_chat_asks_completes_and_starts_a_workflow_that_trains(stack, alice, bob):
    mine = upload(alice, "shapes-ko", make.imagefolder(6))
    theirs = upload(bob, "bobs-shapes", make.imagefolder(3))

    first = ok(
        say(alice, "resnet10t로 도형 2종류 분류하는 모델 만들어줘. 에폭 1, 배치 4, 이미지 크기 32")
    )
    session = first["session_id"]
    assert SESSION_ID.fullmatch(session)
    assert first["type"] == "clarification_needed"
    assert first["message"] == (
        "좋아요! resnet10t로 2종류 분류 모델을 만들어드릴게요. 몇 가지만 확인할게요."
    )
    intent = first["parsed_intent"]
    assert (intent["task_type"], intent["model"], intent["num_classes"]) == (
        "classification",
        "resnet10t",
        2,
    )
    assert (intent["epochs"], intent["batch_size"], intent["image_size"]) == (1, 4, 32)
    assert 0 < intent["confidence"] <= 1
    questions = {q["field"]: q for q in first["questions"]}
    assert list(questions) == ["class_names", "dataset"]
    assert all(q["required"] and q["id"].startswith("q") for q in first["questions"])
    assert questions["class_names"]["question"].startswith("2종류가 구체적으로 어떤 클래스인가요?")
    assert questions["dataset"]["question"] == "데이터셋은 어디에 있나요?"
    # suggestions come from the user's own datasets only
    assert questions["dataset"]["suggestions"] == ["shapes-ko"]
    assert questions["class_names"]["suggestions"] == ["circle, square"]

    # another user's dataset, named or by id, is never resolved
    named = ok(say(alice, "bobs-shapes 데이터셋으로 해줘", session))
    assert named["type"] == "clarification_needed"
    assert named["message"].startswith("'bobs-shapes' 데이터셋을 찾지 못했어요.")
    assert "dataset_id" not in named["parsed_intent"]
    by_id = say(alice, "이걸로", session, context={"dataset_id": theirs["id"]})
    assert by_id.status_code == 404 and by_id.json()["code"] == "DATASET_NOT_FOUND"

    done = ok(say(alice, "데이터셋은 shapes-ko 이고 클래스는 circle, square", session))
    assert done["type"] == "intent_complete" and done["session_id"] == session
    assert done["message"] == "모든 설정이 완료되었습니다! 학습을 시작하시겠어요?"
    assert done["actions"] == [
        {"type": "start_training", "label": "학습 시작"},
        {"type": "edit_config", "label": "설정 수정"},
    ]
    cfg = done["training_config"]
    assert cfg["task_type"] == "classification" and cfg["model_name"] == "resnet10t"
    assert cfg["model_source"] == "timm" and cfg["num_classes"] == 2
    assert cfg["class_names"] == ["circle", "square"]
    assert cfg["dataset"] == {"source": "uploaded", "dataset_id": mine["id"], "name": "shapes-ko"}
    assert cfg["hyperparameters"] == {
        "epochs": 1,
        "batch_size": 4,
        "learning_rate": 0.001,
        "optimizer": "adamw",
        "image_size": 32,
    }

    # bob can neither read nor act on alice's session
    assert bob.http.get(f"/chat/sessions/{session}").status_code == 404
    stolen = say(bob, None, session, action="start_training")
    assert stolen.status_code == 404 and stolen.json()["code"] == "SESSION_NOT_FOUND"
    assert say(bob, "yes", session).status_code == 404
    assert bob.http.delete(f"/chat/sessions/{session}").status_code == 404

    started = ok(say(alice, None, session, action="start_training"))
    assert started["type"] == "training_started" and started["status"] == "pending"
    workflow = started["workflow_id"]
    assert started["websocket_url"] == f"/ws/workflows/{workflow}"
    assert started["message"].startswith(f"학습을 시작했어요! 워크플로우 {workflow}")
    # a repeated start (a double click) is the same workflow
    again = ok(say(alice, None, session, action="start_training"))
    assert again["workflow_id"] == workflow

    seen = follow(stack, alice, workflow)
    assert seen[-1]["type"] == "training_complete", seen
    assert all(m["workflow_id"] == workflow for m in seen)
    job = alice.http.get(f"/training/jobs/{workflow}").json()
    assert job["status"] == "completed" and job["model_name"] == "resnet10t"
    assert job["dataset_id"] == mine["id"] and job["epochs"] == 1 and job["batch_size"] == 4
    assert job["advanced_config"]["image_size"] == 32

    detail = alice.http.get(f"/chat/sessions/{session}").json()
    assert detail["session_id"] == session and detail["status"] == "completed"
    assert detail["workflow_id"] == workflow and detail["language"] == "ko"
    roles = [m["role"] for m in detail["messages"]]
    assert roles == ["user", "assistant"] * 4  # the refused turn stored nothing
    assert detail["messages"][0]["content"].startswith("resnet10t로 도형 2종류")
    assert detail["messages"][-1]["type"] == "training_started"
    assert detail["current_intent"]["dataset_id"] == mine["id"]
    assert detail["training_config"] == cfg and detail["pending_questions"] == []
    assert detail["created_at"] <= detail["updated_at"]


def start_and_train(stack, client: Client, session: str) -> str:
    """``start_training`` and follow the workflow to its end: it must complete."""
    started = ok(say(client, None, session, action="start_training"))
    assert started["type"] == "training_started", started
    seen = follow(stack, client, started["workflow_id"])
    assert seen[-1]["type"] == "training_complete", seen
    return started["workflow_id"]


def test_english_chat_asks_is_answered_edited_and_trains(stack, alice):
    upload(alice, "shapes-en", make.imagefolder(3))
    first = ok(say(alice, "I want to classify circles vs squares"))
    session = first["session_id"]
    assert first["type"] == "clarification_needed"
    assert first["parsed_intent"]["class_names"] == ["circles", "squares"]
    fields = [q["field"] for q in first["questions"]]
    assert fields == ["model", "dataset"]
    assert first["questions"][0]["question"] == "Which model should I use?"
    assert "resnet18" in first["questions"][0]["suggestions"]

    # an unknown model: near misses from the catalogue, asked again
    wrong = ok(say(alice, "resnet999 please", session))
    assert wrong["type"] == "clarification_needed"
    assert wrong["message"].startswith("'resnet999' is not in the model catalogue.")
    model_q = next(q for q in wrong["questions"] if q["field"] == "model")
    assert {"resnet18", "resnet50"} <= set(model_q["suggestions"])

    done = ok(say(alice, "ok, resnet18 with the shapes-en dataset", session))
    assert done["type"] == "intent_complete"
    assert done["training_config"]["model_name"] == "resnet18"
    assert done["actions"][0] == {"type": "start_training", "label": "Start training"}

    edited = ok(
        say(
            alice,
            None,
            session,
            action="edit_config",
            training_config={
                "hyperparameters": {"epochs": 1, "learning_rate": 0.01, "batch_size": 4}
            },
        )
    )
    assert edited["type"] == "intent_complete"
    assert edited["training_config"]["hyperparameters"]["epochs"] == 1
    assert edited["training_config"]["hyperparameters"]["learning_rate"] == 0.01
    messages = alice.http.get(f"/chat/sessions/{session}").json()["messages"]
    assert messages[-2]["type"] == "action" and messages[-1]["type"] == "intent_complete"
    workflow = start_and_train(stack, alice, session)
    job = alice.http.get(f"/training/jobs/{workflow}").json()
    assert (job["model_name"], job["epochs"], job["learning_rate"]) == ("resnet18", 1, 0.01)


def test_japanese_chat_asks_is_answered_and_trains_a_detector(stack, alice):
    upload(alice, "shapes-yolo", make.yolo(4))
    first = ok(say(alice, "YOLO11nで丸と四角を検出したい"))
    assert first["type"] == "clarification_needed"
    assert first["message"] == (
        "了解しました！yolo11nで2クラスの物体検出モデルを作ります。いくつか確認させてください。"  # noqa: RUF001
    )
    assert [q["field"] for q in first["questions"]] == ["dataset"]
    dataset_q = first["questions"][0]
    assert dataset_q["question"] == "どのデータセットを使いますか？"  # noqa: RUF001
    assert dataset_q["suggestions"] == ["shapes-yolo"]  # a detector reads YOLO/COCO only

    done = ok(say(alice, "データセットはshapes-yoloでお願いします", first["session_id"]))
    assert done["type"] == "intent_complete"
    assert done["message"].endswith("設定がすべて完了しました！学習を開始しますか？")  # noqa: RUF001
    cfg = done["training_config"]
    assert (cfg["task_type"], cfg["model_name"], cfg["model_source"]) == (
        "detection",
        "yolo11n",
        "ultralytics",
    )
    assert cfg["class_names"] == ["丸", "四角"]
    assert "circle, square" in done["message"]  # the dataset's own classes, said
    assert done["actions"][1] == {"type": "edit_config", "label": "設定を編集"}
    short = {"hyperparameters": {"epochs": 1, "batch_size": 4}}  # a short run on the CPU
    assert (
        ok(say(alice, None, first["session_id"], action="edit_config", training_config=short))[
            "type"
        ]
        == "intent_complete"
    )
    workflow = start_and_train(stack, alice, first["session_id"])
    job = alice.http.get(f"/training/jobs/{workflow}").json()
    assert (job["framework"], job["model_name"], job["task_type"]) == (
        "ultralytics",
        "yolo11n",
        "object_detection",
    )


def test_bad_input_is_refused_with_nothing_stored(alice):
    session = ok(say(alice, "resnet18 classifier"))["session_id"]

    def count() -> int:
        return len(alice.http.get(f"/chat/sessions/{session}").json()["messages"])

    before = count()
    for body, status, field in [
        ({"message": ""}, 400, "message"),
        ({"message": "   \n "}, 400, "message"),
        ({}, 400, "message"),
        ({"message": "x" * 10_240}, 413, "message"),
        ({"message": "가" * 4001}, 413, "message"),
        (
            {"message": "hi", "context": {"dataset_id": "no-such-dataset"}},
            404,
            "context.dataset_id",
        ),
        ({"message": "hi", "context": {"project_id": 999_999}}, 404, "context.project_id"),
        ({"message": "hi", "context": {"blob": "x" * 5000}}, 400, "context"),
        ({"action": "launch"}, 400, "action"),
        ({"action": "start_training"}, 409, "action"),  # the intent is not complete
    ]:
        r = say(alice, session=session, **body)
        assert r.status_code == status, (body, r.text)
        error = r.json()
        assert error["field"] == field and error["detail"], error
        assert error["error"]["code"] == error["code"] and error["error"]["message"]
    assert count() == before
    long = say(alice, "x" * 10_240).json()
    assert "at most 4000" in long["detail"]
    for sid in ("sess_" + "0" * 24, "sess_nope", "../x", "x" * 300):
        r = alice.http.get(f"/chat/sessions/{sid}")
        assert r.status_code == 404, sid
        assert say(alice, "hi", sid).status_code == 404


def test_delete_a_session(alice):
    session = ok(say(alice, "detect cats with yolov8n"))["session_id"]
    assert alice.http.delete(f"/chat/sessions/{session}").status_code == 204
    assert alice.http.get(f"/chat/sessions/{session}").status_code == 404
    assert alice.http.delete(f"/chat/sessions/{session}").status_code == 404
    assert say(alice, "hello", session).status_code == 404


def test_sessions_survive_a_restart(tmp_path):
    first = start_stack(tmp_path / "data")
    try:
        user = Client(first)
        session = ok(say(user, "ResNet50으로 고양이 3종류 분류하는 모델 만들어줘"))["session_id"]
    finally:
        stop_stack(first)
    second = start_stack(tmp_path / "data")
    try:
        http = httpx.Client(base_url=second.base + "/api/v1", timeout=30)
        token = http.post(
            "/auth/login", json={"email": user.email, "password": user.password}
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        detail = http.get(f"/chat/sessions/{session}").json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["current_intent"]["model"] == "resnet50"
        assert detail["pending_questions"] == ["class_names", "dataset"]
        answer = http.post(
            "/chat/message", json={"session_id": session, "message": "치즈, 나비, 츄르"}
        ).json()
        assert answer["parsed_intent"]["class_names"] == ["치즈", "나비", "츄르"]
        assert [q["field"] for q in answer["questions"]] == ["dataset"]
    finally:
        stop_stack(second)
