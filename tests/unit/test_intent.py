"""The chat's rules parser (shared/intent.py) over the corpus of tests/data/intent_corpus.json
(Korean, English and Japanese messages with the intent each states), and the parts of a
conversation around it: merging answers, reviewing against the catalogue and the user's
own datasets, questions, the training config."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import intent

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "intent_corpus.json"
FIELDS = (
    "language",
    "task_type",
    "model",
    "num_classes",
    "class_names",
    "dataset",
    "epochs",
    "batch_size",
    "learning_rate",
)
THRESHOLD = 0.90  # of all fields, over the whole corpus


def corpus() -> dict[str, Any]:
    return json.loads(CORPUS_PATH.read_text(encoding="utf-8"))


def datasets(data: dict[str, Any]) -> tuple[intent.DatasetRef, ...]:
    return tuple(
        intent.DatasetRef(**{**d, "classes": tuple(d.get("classes", ()))}) for d in data["datasets"]
    )


def context(entry: dict[str, Any], data: dict[str, Any]) -> intent.ParseContext:
    """An answer to a question is read in its conversation's language."""
    pending = tuple(entry.get("pending", ()))
    return intent.ParseContext(datasets(data), pending, entry["lang"] if pending else None)


def judge(entry: dict[str, Any], parsed: intent.Parsed) -> dict[str, tuple[Any, Any, bool]]:
    """Each field: (expected, got, right)."""
    want, got = entry["expect"], parsed.intent
    out: dict[str, tuple[Any, Any, bool]] = {}
    for name in FIELDS:
        if name == "language":
            expected, actual = entry["lang"], parsed.language
            right = expected == actual
        elif name == "model" and want.get("unknown_model"):
            expected = f"unknown {want['unknown_model']} ~ {want['suggest']}"
            suggestions = intent.ModelCatalogue.default().suggest(
                parsed.unknown_model or "", got.task_type
            )
            actual = f"unknown {parsed.unknown_model} ~ {suggestions}"
            right = (
                got.model is None
                and (parsed.unknown_model or "").lower() == want["unknown_model"]
                and want["suggest"] in suggestions
            )
        elif name == "dataset":
            expected, actual = want.get("dataset"), got.dataset_id
            right = expected == actual
        elif name == "class_names":
            expected, actual = want.get("class_names"), got.class_names
            right = (expected is None and actual is None) or (
                expected is not None
                and actual is not None
                and sorted(x.casefold() for x in expected) == sorted(x.casefold() for x in actual)
            )
        elif name == "learning_rate":
            expected, actual = want.get(name), got.learning_rate
            right = (expected is None and actual is None) or (
                expected is not None and actual is not None and math.isclose(expected, actual)
            )
        else:
            expected, actual = want.get(name), getattr(got, name)
            right = expected == actual
        out[name] = (expected, actual, right)
    return out


def score(
    parse: Callable[[str, intent.ParseContext], intent.Parsed] = intent.parse,
    only: str | None = None,
) -> dict[str, Any]:
    """Right fields per field and per language, and every miss; ``only``: the messages of
    one set ("main", or "heldout": written after the rules)."""
    data = corpus()
    fields = {f: [0, 0] for f in FIELDS}
    languages: dict[str, list[int]] = {}
    misses = []
    for entry in data["messages"]:
        if only is not None and entry.get("set", "main") != only:
            continue
        parsed = parse(entry["message"], context(entry, data))
        lang = languages.setdefault(entry["lang"], [0, 0])
        for name, (expected, actual, right) in judge(entry, parsed).items():
            fields[name][0] += right
            fields[name][1] += 1
            lang[0] += right
            lang[1] += 1
            if not right:
                misses.append((entry["message"], name, expected, actual))
    total = [sum(v[0] for v in fields.values()), sum(v[1] for v in fields.values())]
    return {"fields": fields, "languages": languages, "total": total, "misses": misses}


# --- the corpus ---------------------------------------------------------------------------


def test_corpus_is_large_and_in_three_languages():
    data = corpus()
    langs = [m["lang"] for m in data["messages"]]
    assert len(langs) >= 40 and min(langs.count(x) for x in ("ko", "en", "ja")) >= 13
    assert all(m["message"].strip() for m in data["messages"])


def test_corpus_accuracy_is_at_least_the_threshold():
    result = score()
    right, total = result["total"]
    misses = "\n".join(f"  {m!r}: {f} expected {e!r}, got {a!r}" for m, f, e, a in result["misses"])
    assert right / total >= THRESHOLD, f"{right}/{total} fields right; misses:\n{misses}"
    for lang, (ok, n) in result["languages"].items():
        assert ok / n >= THRESHOLD - 0.05, (lang, ok, n)


# --- a conversation -----------------------------------------------------------------------

DATASETS = datasets(corpus())
CTX = intent.ParseContext(DATASETS)


def turn(text, prior=None, pending=(), language=None):
    """One message read, merged and reviewed as the chat service does."""
    parsed = intent.parse(text, intent.ParseContext(DATASETS, tuple(pending), language))
    merged = intent.merge(prior or intent.Intent(), parsed)
    return parsed, merged, intent.review(merged, DATASETS, parsed)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("ResNet50으로 고양이 분류", "ko"),
        ("YOLO11sで車を検出したい", "ja"),
        ("画像分類", "ja"),  # kanji only
        ("train a detector", "en"),
        ("고양이とねこ", "ko"),  # more Hangul than kana
    ],
)
def test_language_is_told_by_script(text, lang):
    assert intent.detect_language(text) == lang


def test_a_latin_answer_keeps_the_conversations_language():
    assert intent.detect_language("cats, dogs", "ja") == "ja"
    assert intent.detect_language("cats, dogs") == "en"


def test_the_seeds_example_asks_for_classes_and_dataset_then_completes():
    parsed, merged, r = turn("ResNet50으로 고양이 3종류 분류하는 모델 만들어줘")
    assert (merged.task_type, merged.model, merged.num_classes) == ("classification", "resnet50", 3)
    assert r.missing == ["class_names", "dataset"]
    qs = intent.questions(r, "ko", DATASETS, parsed=parsed)
    assert [q["field"] for q in qs] == ["class_names", "dataset"] and all(q["required"] for q in qs)
    assert qs[0]["question"].startswith("3종류가 구체적으로 어떤 클래스인가요?")
    # suggestions: only the user's ready datasets a classifier can read (imagefolder)
    assert qs[1]["suggestions"] == ["cats", "꽃사진", "部品検査", "My Cat Dataset"]
    assert "classification" not in qs[1]["question"] and "데이터셋" in qs[1]["question"]
    msg = intent.clarification_message(r, "ko")
    assert msg == "좋아요! resnet50으로 3종류 분류 모델을 만들어드릴게요. 몇 가지만 확인할게요."

    parsed, merged, r = turn("치즈, 나비, 츄르", merged, r.missing, "ko")
    assert merged.class_names == ["치즈", "나비", "츄르"] and r.missing == ["dataset"]
    parsed, merged, r = turn("cats", merged, r.missing, "ko")
    assert r.complete and parsed.language == "ko"
    cfg = intent.training_config(r)
    assert cfg["task_type"] == "classification" and cfg["model_name"] == "resnet50"
    assert cfg["model_source"] == cfg["framework"] == "timm" and cfg["model"] == "resnet50"
    assert cfg["dataset"] == {"source": "uploaded", "dataset_id": "ds-cats", "name": "cats"}
    assert cfg["dataset_id"] == "ds-cats" and cfg["num_classes"] == 3
    assert cfg["hyperparameters"] == {
        "epochs": 10,
        "batch_size": 32,
        "learning_rate": 0.001,
        "optimizer": "adamw",
    }  # the catalogue's basic preset for timm
    # the user's class names differ from the dataset's: said, not hidden
    assert r.notes[0][0] == "class_mismatch"
    assert "persian" in intent.complete_message(r, "ko")
    assert [a["type"] for a in intent.actions("ko")] == ["start_training", "edit_config"]
    assert intent.actions("ja")[0]["label"] == "学習開始"


def test_a_dataset_supplies_the_class_names_and_the_job_config():
    _, merged, r = turn(
        "Train yolov8n on fruit-boxes for 3 epochs at image size 64 with sgd, batch 4"
    )
    assert r.complete and merged.class_names is None
    assert r.intent.class_names == ["apple", "banana"] and r.intent.num_classes == 2
    # the job POST /workflows makes of it (the workflow service's own mapping)
    from shared.services.workflows import training_config

    assert training_config(intent.training_config(r)) == {
        "framework": "ultralytics",
        "model_name": "yolov8n",
        "task_type": "object_detection",
        "dataset_id": "ds-fruit",
        "epochs": 3,
        "batch_size": 4,
        "learning_rate": 0.001,
        "advanced_config": {"image_size": 64, "optimizer": "SGD"},
    }


def test_an_unknown_model_gets_near_misses_and_is_asked_again():
    parsed, merged, r = turn("resnet999로 개 품종 분류해줘")
    assert parsed.unknown_model == "resnet999" and merged.model is None
    assert r.missing[0] == "model"
    q = intent.questions(r, "ko", DATASETS, parsed=parsed)[0]
    assert q["field"] == "model" and {"resnet18", "resnet50"} <= set(q["suggestions"])
    assert intent.clarification_message(r, "ko").startswith("'resnet999' 모델은 카탈로그에 없어요.")
    # a family alone is asked about too, with that family's models
    parsed, _, r = turn("train a yolo detector")
    assert parsed.unknown_model == "yolo"
    q = intent.questions(r, "en", DATASETS, parsed=parsed)[0]
    assert q["suggestions"] and all(s.startswith("yolo") for s in q["suggestions"])
    # an earlier model is replaced, not kept, when a new one is unknown
    _, merged, _ = turn("resnet18 please")
    _, merged, r = turn("actually vgg999", merged)
    assert merged.model is None and "model" in r.missing


def test_catalogue_names_however_they_are_written():
    for text, model in [
        ("ResNet-50", "resnet50"),
        ("resnet 50", "resnet50"),
        ("YOLOv11s", "yolo11s"),
        ("yolo v8 nano", "yolov8n"),
        ("EfficientNet-B0", "efficientnet_b0"),
        ("ViT tiny", "vit_tiny_patch16_224"),
        ("resnet50.a1_in1k", "resnet50.a1_in1k"),
    ]:
        assert intent.parse(f"use {text}", CTX).intent.model == model, text
    for word in ("vitamin", "same", "coat", "test", "data"):
        got = intent.parse(f"classify {word} and cats", CTX)
        assert got.unknown_model is None and got.intent.model is None, word


def test_a_dataset_is_resolved_only_among_the_users_own():
    # bobs-birds is someone else's: named, never resolved, and said so
    parsed, merged, r = turn("convnext_atto로 bobs-birds 데이터셋 분류")
    assert merged.dataset_id is None and parsed.dataset_mention == "bobs-birds"
    assert "dataset" in r.missing
    assert "'bobs-birds' 데이터셋을 찾지 못했어요." in intent.clarification_message(r, "ko")
    # an id that is not in the user's list is not resolved either
    assert (
        intent.parse(
            "ds-someone-else", intent.ParseContext(DATASETS, ("dataset",))
        ).intent.dataset_id
        is None
    )
    # a model's answer naming a dataset resolves the same way
    got = intent.from_fields({"dataset": "bobs-birds"}, "x", CTX)
    assert got.intent.dataset_id is None and got.dataset_mention == "bobs-birds"
    assert intent.from_fields({"dataset": "Cats"}, "x", CTX).intent.dataset_id == "ds-cats"


def test_a_dataset_that_cannot_be_used_is_asked_again():
    # still processing
    _, _, r = turn("resnet18, dogs-raw 데이터셋으로 분류")
    assert "dataset" in r.missing and r.notes[0][0] == "dataset_not_ready"
    # a detector cannot read an imagefolder dataset
    _, _, r = turn("yolov8n detector on the cats dataset")
    assert "dataset" in r.missing and r.notes[0][0] == "dataset_format"
    assert "yolo / coco" in intent.clarification_message(r, "en")
    # nor can a timm model detect
    _, _, r = turn("resnet18 to detect cars")
    assert "model" in r.missing and r.notes[0] == (
        "model_task",
        {"model": "resnet18", "task": "detection"},
    )


def test_out_of_range_hyperparameters_are_asked_again_and_a_number_answers():
    parsed, merged, r = turn("resnet18 on cats dataset, 5000 epochs")
    assert parsed.invalid == {"epochs": "5000"} and merged.epochs is None
    assert r.missing == ["epochs"] and "1~1000" not in intent.clarification_message(r, "en")
    assert "5000" in intent.clarification_message(r, "en")
    parsed, merged, r = turn("20", merged, r.missing)
    assert merged.epochs == 20 and r.complete


def test_a_later_message_changes_a_field():
    _, merged, _ = turn("resnet18, cats dataset")
    _, merged, r = turn("에폭은 3으로, 배치 8", merged)
    assert (merged.model, merged.epochs, merged.batch_size) == ("resnet18", 3, 8) and r.complete
    _, merged, r = turn("use efficientnet_b0 instead", merged)
    assert merged.model == "efficientnet_b0" and merged.epochs == 3


@pytest.mark.parametrize(
    ("text", "confirm"),
    [
        ("yes", True),
        ("Yes, start training!", True),
        ("네, 시작해주세요", True),
        ("はい、お願いします", True),
        ("学習開始", True),
        ("yes but with 5 epochs", False),
        ("no", False),
        ("start resnet18", False),
    ],
)
def test_a_plain_yes_is_a_confirmation(text, confirm):
    assert intent.parse(text, CTX).confirm is confirm


def test_edit_config_takes_the_training_configs_own_keys():
    parsed = intent.edits(
        {
            "hyperparameters": {"epochs": 7, "learning_rate": 0.01},
            "dataset": {"dataset_id": "ds-cats"},
        },
        DATASETS,
        "ja",
    )
    assert parsed.language == "ja" and parsed.intent.epochs == 7
    assert parsed.intent.learning_rate == 0.01 and parsed.intent.dataset_id == "ds-cats"
    parsed = intent.edits({"model_name": "resnet9999", "epochs": 0}, DATASETS, "en")
    assert parsed.unknown_model == "resnet9999" and parsed.invalid == {"epochs": "0"}


def test_questions_are_in_the_users_language():
    for lang, word in (("ko", "모델"), ("en", "model"), ("ja", "モデル")):
        _, _, r = turn("")
        qs = intent.questions(r, lang, DATASETS)
        assert [q["field"] for q in qs] == ["task_type", "model", "class_names", "dataset"]
        assert word in qs[1]["question"]
        assert qs[0]["suggestions"] == ["classification", "detection"]


def test_korean_particles_follow_the_model_name():
    assert intent._ko_ro("resnet50") == "으로" and intent._ko_ro("yolo11s") == "로"
    assert intent._ko_ro("resnet18") == "로" and intent._ko_ro("yolov8n") == "으로"


# --- the chat service over in-memory ports --------------------------------------------------


class MemorySessions:
    """The chat session port in memory, with the same version rule as the table's."""

    def __init__(self):
        self.items, self.msgs = {}, {}

    def create(self, session, messages):
        if session.id in self.items:
            return None
        stored = session.model_copy(update={"message_count": len(messages), "version": 1})
        self.items[session.id], self.msgs[session.id] = stored, list(messages)
        return stored

    def get(self, session_id):
        return self.items.get(session_id)

    def messages(self, session_id):
        return list(self.msgs.get(session_id, []))

    def save(self, session, messages, *, expected_version):
        current = self.items.get(session.id)
        if current is None or current.version != expected_version:
            return None
        stored = session.model_copy(
            update={
                "message_count": session.message_count + len(messages),
                "version": expected_version + 1,
            }
        )
        self.items[session.id] = stored
        self.msgs[session.id] += messages
        return stored

    def delete(self, session_id):
        self.items.pop(session_id, None)
        self.msgs.pop(session_id, None)


class OwnDatasets:
    """The dataset service's list: an admin's holds everyone's datasets."""

    def __init__(self, owner_id):
        from shared.models import Dataset

        self.rows = [
            Dataset(
                id=d.id,
                owner_id=owner_id,
                name=d.name,
                key="k",
                format=d.format,
                status=d.status,
                class_distribution=dict.fromkeys(d.classes, 1),
            )
            for d in DATASETS
        ] + [
            Dataset(
                id="ds-other",
                owner_id=owner_id + 1,
                name="others",
                key="k",
                format="imagefolder",
                status="ready",
            )
        ]

    def list(self, actor):
        return self.rows


class Workflows:
    def __init__(self):
        self.created, self.fail = [], None

    def create(self, actor, config, **meta):
        if self.fail:
            raise self.fail
        self.created.append((config, meta))
        return {"workflow_id": str(len(self.created)), "status": "pending", "queue_position": 0}

    def get(self, actor, workflow_id):
        return {"workflow_id": str(workflow_id), "status": "training"}


@pytest.fixture
def chat():
    from shared.models import Principal
    from shared.services.chat import ChatService

    service = ChatService(
        MemorySessions(), intent.RulesParser(), OwnDatasets(1), Workflows(), max_message_chars=4000
    )
    return service, Principal(user_id=1, role="admin")


def test_yes_starts_the_workflow_once(chat):
    service, alice = chat
    first = service.post(alice, session_id=None, message="resnet18 on cats dataset", context=None)
    assert first["type"] == "intent_complete"
    sid = first["session_id"]
    started = service.post(alice, session_id=sid, message="yes, start it", context=None)
    assert started["type"] == "training_started" and started["workflow_id"] == "1"
    config, meta = service.workflows.created[0]
    assert config["model"] == "resnet18" and config["dataset_id"] == "ds-cats"
    assert meta["description"] == f"Chat session {sid}"
    # again, by message or by action: the same workflow, nothing new made
    assert service.post(alice, session_id=sid, message="yes", context=None)["workflow_id"] == "1"
    assert service.start(alice, sid)["status"] == "training"
    assert len(service.workflows.created) == 1
    # a changed intent is a new training
    changed = service.post(alice, session_id=sid, message="5 epochs", context=None)
    assert changed["type"] == "intent_complete"
    assert service.start(alice, sid)["workflow_id"] == "2"
    detail = service.detail(alice, sid)
    assert detail["workflow_id"] == "2" and detail["status"] == "completed"
    kinds = [m.kind for m in detail["messages"] if m.role == "assistant"]
    assert kinds == ["intent_complete", "training_started", "intent_complete", "training_started"]


def test_a_refused_start_leaves_the_session_startable(chat):
    from shared.errors import Conflict

    service, alice = chat
    sid = service.post(alice, session_id=None, message="resnet18 on cats dataset", context=None)[
        "session_id"
    ]
    service.workflows.fail = Conflict("Too many active workflows", code="ACTIVE_JOB_LIMIT")
    with pytest.raises(Conflict):
        service.start(alice, sid)
    s = service.sessions.get(sid)
    assert s.starting_revision is None and s.workflow_id is None
    assert len(service.sessions.messages(sid)) == 2  # nothing said about a start
    service.workflows.fail = None
    assert service.start(alice, sid)["workflow_id"] == "1"


def test_a_start_under_way_is_not_made_twice(chat):
    import time

    from shared.errors import Conflict

    service, alice = chat
    sid = service.post(alice, session_id=None, message="resnet18 on cats dataset", context=None)[
        "session_id"
    ]
    s = service.sessions.get(sid)
    claimed = s.model_copy(update={"starting_revision": s.revision, "starting_at": time.time()})
    service.sessions.items[sid] = claimed
    with pytest.raises(Conflict) as err:
        service.start(alice, sid)
    assert err.value.code == "START_IN_PROGRESS" and not service.workflows.created
    # a claim left by a crash expires
    service.sessions.items[sid] = claimed.model_copy(update={"starting_at": time.time() - 600})
    assert service.start(alice, sid)["workflow_id"] == "1"


def test_an_admin_resolves_only_their_own_datasets(chat):
    from shared.errors import NotFound

    service, admin = chat
    reply = service.post(
        admin, session_id=None, message="resnet18 on the others dataset", context=None
    )
    assert "dataset_id" not in reply["parsed_intent"]
    assert next(q["suggestions"] for q in reply["questions"] if q["field"] == "dataset") == [
        "cats",
        "꽃사진",
        "部品検査",
        "My Cat Dataset",
    ]
    with pytest.raises(NotFound):
        service.post(admin, session_id=None, message="hi", context={"dataset_id": "ds-other"})


def test_a_concurrent_turn_is_refused_not_lost(chat):
    from shared.errors import Conflict

    service, alice = chat
    sid = service.post(alice, session_id=None, message="resnet18", context=None)["session_id"]
    real_save = service.sessions.save

    def racing_save(session, messages, *, expected_version):  # another turn got there first
        service.sessions.items[sid] = service.sessions.items[sid].model_copy(
            update={"version": expected_version + 1}
        )
        return real_save(session, messages, expected_version=expected_version)

    service.sessions.save = racing_save
    with pytest.raises(Conflict) as err:
        service.post(alice, session_id=sid, message="cats dataset", context=None)
    assert err.value.code == "SESSION_BUSY"
    assert len(service.sessions.messages(sid)) == 2


@pytest.mark.timeout(20)  # a regression here backtracks for hours, not seconds
@pytest.mark.parametrize(
    "message",
    [
        "please start " * 40 + "x",  # two readings of "please start": 2^n before the fix
        "1" * 4000,
        "epochs" + " " * 3000 + "x",
        "dataset" + " " * 3000 + "x",
        "네 " * 1000 + "x",
        "3" * 2000 + "개 종류",
        "7" * 2000 + "種類",
    ],
)
def test_pathological_messages_are_parsed_without_backtracking(message):
    intent.parse(message)


def test_odd_field_types_from_a_client_or_a_model_are_ignored():
    for bad in (["classification"], {"a": 1}, 3):
        assert intent.from_fields({"task_type": bad}, "").intent.task_type is None
