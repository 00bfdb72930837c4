"""Seed 003's chat: the training intent a conversation builds, and the rules that read it
from a message in Korean, English or Japanese. Pure: no I/O and no model, so it works
offline and answers the same way every time.

A message is read into a :class:`Parsed` (what it states by itself: task type, model,
number and names of classes, dataset, hyperparameters), merged into the session's
:class:`Intent`, and reviewed against the catalogue and the user's own datasets
(:func:`review`): what is still missing becomes questions in the user's language, and a
complete intent becomes seed 003's ``training_config``, which POST /workflows takes as it
is (shared/services/workflows.py maps it onto a job). Models resolve only to catalogue names (shared/catalogue.py), with
near-miss suggestions for the rest; datasets resolve only among the datasets the caller
hands in (the service hands in the user's own), never by an id or name alone.

The Bedrock adapter (shared/adapters/bedrock.py) asks a model for the same fields through
a tool whose input schema is :data:`INTENT_SCHEMA`, and checks its answer with
:func:`from_fields`, the same resolution the rules use.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import catalogue
from shared.models import utcnow

Language = Literal["ko", "en", "ja"]
TaskType = Literal["classification", "detection"]
# Seed 003's task types and the catalogue's.
TASKS: dict[str, str] = {"classification": "image_classification", "detection": "object_detection"}
REQUIRED = ("task_type", "model", "class_names", "dataset")
HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate", "image_size")
# What a stated value may be (seed 003's validation example: epochs 1..1000).
BOUNDS: dict[str, tuple[float, float]] = {
    "epochs": (1, 1000),
    "batch_size": (1, 1024),
    "learning_rate": (1e-7, 1.0),
    "image_size": (32, 1536),
    "num_classes": (1, 1000),
}
MAX_CLASS_NAME = 100
MAX_CLASSES = 1000


# --- the intent and a session ---------------------------------------------------------


class Intent(BaseModel):
    """What the user asked for so far; None is "not said"."""

    task_type: TaskType | None = None
    model: str | None = None  # a catalogue name
    framework: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    dataset_id: str | None = None
    dataset_name: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    image_size: int | None = None

    def stated(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class DatasetRef(BaseModel):
    """One of the user's datasets, as the chat sees it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    format: str
    status: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParseContext:
    """What a message is read against: the user's datasets (the only ones it may name),
    the fields the assistant asked for last, and the conversation's language."""

    datasets: tuple[DatasetRef, ...] = ()
    pending: tuple[str, ...] = ()
    language: Language | None = None


class Parsed(BaseModel):
    """What one message states by itself."""

    language: Language
    intent: Intent = Field(default_factory=Intent)
    unknown_model: str | None = None  # a model name the catalogue does not have
    model_suggestions: list[str] = Field(default_factory=list)
    dataset_mention: str | None = None  # a dataset named that is not one of the user's
    invalid: dict[str, str] = Field(default_factory=dict)  # field -> the value as stated
    confirm: bool = False  # "yes, start"
    confidence: float = 0.0


class ChatMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    timestamp: datetime = Field(default_factory=utcnow)
    kind: str | None = None  # the assistant's reply type, or "action" for a user's action


class ChatSession(BaseModel):
    """A conversation: its messages are stored beside it, numbered from 1."""

    id: str
    owner_id: int
    language: Language = "en"
    intent: Intent = Field(default_factory=Intent)
    pending: list[str] = Field(default_factory=list)
    status: Literal["active", "completed"] = "active"
    revision: int = 0  # bumped whenever the intent changes
    confidence: float = 0.0  # of the last message's parse
    workflow_id: int | None = None  # the last training job started from this chat
    started_revision: int | None = None  # the intent revision it was started from
    starting_revision: int | None = None  # a start under way (claimed before it is made)
    starting_at: float | None = None  # when it was claimed (epoch seconds)
    project_id: int | None = None
    message_count: int = 0
    version: int = 0  # bumped by every write (optimistic concurrency)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# --- language ----------------------------------------------------------------------------

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_KANJI = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")


def detect_language(text: str, default: Language | None = None) -> Language:
    """By script: Hangul is Korean, kana or kanji Japanese, else English; a message in
    Latin letters only (a model name, a number) keeps the conversation's language."""
    hangul, kana, kanji = (len(p.findall(text)) for p in (_HANGUL, _KANA, _KANJI))
    if hangul and hangul >= kana:
        return "ko"
    if kana or kanji:
        return "ja"
    return default or "en"


# --- the models the chat can train ------------------------------------------------------


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class ModelEntry:
    name: str
    framework: str
    tasks: tuple[TaskType, ...]
    featured: bool = False


# Families people name by themselves ("YOLO", "ViT"), so that "vgg16", "yolov9c" or a bare
# "yolo" is recognised as a model the catalogue lacks (and answered with suggestions)
# rather than ignored. The catalogue's own families count when a number follows them.
KNOWN_FAMILIES = (
    "alexnet", "beit", "coatnet", "convnext", "convnextv", "deit", "densenet", "detr", "dinov",
    "efficientnet", "efficientnetv", "fasterrcnn", "googlenet", "inception", "levit", "maskrcnn",
    "maxvit", "mnasnet", "mobilenet", "mobilenetv", "mobilevit", "regnet", "resnest", "resnet",
    "resnext", "retinanet", "rtdetr", "shufflenet", "squeezenet", "ssd", "swin", "swinv", "vgg",
    "vit", "wideresnet", "xception", "yolo", "yolov", "yolox",
)  # fmt: skip
_SIZE_WORDS = {"n": "nano", "s": "small", "m": "medium", "l": "large", "x": "xlarge"}


def default_task(entry: ModelEntry) -> TaskType:
    """The task a model does when the user does not say: detection for YOLO, else its first."""
    return "detection" if "detection" in entry.tasks else entry.tasks[0]


class ModelCatalogue:
    """The catalogue's image models, found by name however it is written ("ResNet-50",
    "resnet 50", "YOLOv11s", "ViT tiny": a short form several models share means the
    featured one), with near-miss suggestions for the rest."""

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self.entries = list(entries)
        self._by_key: dict[str, ModelEntry] = {}
        for e in self.entries:
            self._by_key.setdefault(_key(e.name), e)
        aliases: dict[str, list[ModelEntry]] = {}
        for e in self.entries:
            for alias in _aliases(e.name):
                aliases.setdefault(alias, []).append(e)
        for alias, found in aliases.items():
            featured = [e for e in found if e.featured]
            chosen = found if len(found) == 1 else featured if len(featured) == 1 else []
            if chosen and alias not in self._by_key:
                self._by_key[alias] = chosen[0]
        derived = {re.match(r"[a-z]*", _key(e.name)).group() for e in self.entries}
        self.families = sorted(
            {f for f in derived if len(f) >= 3} | set(KNOWN_FAMILIES), key=len, reverse=True
        )

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> ModelCatalogue:
        """The catalogue's timm and ultralytics models for image tasks."""
        entries = []
        for m in catalogue.search_models():
            tasks = tuple(t for t, internal in TASKS.items() if internal in m["task_types"])
            if tasks:
                entries.append(
                    ModelEntry(m["model_id"], m["framework"], tasks, bool(m.get("featured")))
                )
        return cls(entries)

    def resolve(self, name: str) -> ModelEntry | None:
        """The model ``name`` means; a timm ``arch.tag`` keeps a tag the catalogue knows."""
        found = self._by_key.get(_key(name))
        if found is None and "." in name:
            canonical = catalogue.canonical_name(name)
            base = self._by_key.get(_key(canonical.partition(".")[0])) if canonical else None
            if base is not None:
                found = ModelEntry(canonical, base.framework, base.tasks, base.featured)
        return found

    def family(self, key: str, raw: str) -> str | None:
        """The family a token names (``resnet999`` -> ``resnet``), if it looks like a model."""
        for fam in self.families:
            if not key.startswith(fam):
                continue
            rest, after = key[len(fam) :], raw[len(fam) : len(fam) + 1]
            if (rest and (rest[0].isdigit() or after in ("-", "_", "."))) or (
                not rest and fam in KNOWN_FAMILIES
            ):
                return fam
        return None

    def for_task(self, task: str | None) -> list[str]:
        return [e.name for e in self.entries if task is None or task in e.tasks]

    def suggest(self, name: str, task: str | None = None, n: int = 5) -> list[str]:
        """Catalogue names near ``name``: featured models it begins ("vit tiny", "yolo"),
        then the catalogue's own near misses (shared/catalogue.py ``suggest``)."""
        key = _key(name)
        pool = [e for e in self.entries if task is None or task in e.tasks] or self.entries
        starts = [e.name for e in pool if e.featured and key and _key(e.name).startswith(key)]
        near = catalogue.suggest(name, None, TASKS.get(task or ""), n * 2)
        known = {e.name for e in pool}
        out = list(dict.fromkeys([*starts, *(m for m in near if m in known)]))
        return out[:n] or [e.name for e in pool if e.featured][:n]


def _aliases(name: str) -> set[str]:
    """Other ways people write ``name``: leading parts of a timm name ("vit_tiny" for
    vit_tiny_patch16_224), YOLO sizes spelled out, YOLO11 as "YOLOv11"."""
    out: set[str] = set()
    parts = name.split("_")
    for k in range(1, len(parts)):
        head = parts[:k]
        if k >= 2 or any(ch.isdigit() for ch in head[0]):
            out.add(_key("".join(head)))
    m = re.fullmatch(r"yolo(v?)(\d+)([nsmlx])", name)
    if m:
        for v in ("", "v"):
            out.add(f"yolo{v}{m[2]}{m[3]}")
            out.add(f"yolo{v}{m[2]}{_SIZE_WORDS[m[3]]}")
    out.discard(_key(name))
    return out


# --- numbers -----------------------------------------------------------------------------

_EN_NUMBERS = {
    w: i + 1
    for i, w in enumerate(
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen", "twenty")
    )
}  # fmt: skip
_KO_NUMBERS = {
    "한": 1, "하나": 1, "두": 2, "둘": 2, "세": 3, "셋": 3, "석": 3, "네": 4, "넷": 4,
    "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9, "열": 10,
}  # fmt: skip
_KANJI_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")}
_NUMBER = r"(?<![\d.])(\d+(?:\.\d+)?(?:e[-+]?\d+)?|\.\d+)"  # a digit run is tried once


def _kanji_number(text: str) -> int | None:
    total, digit = 0, 0
    for ch in text:
        if ch in _KANJI_DIGITS:
            digit = _KANJI_DIGITS[ch]
        elif ch == "十":
            total += (digit or 1) * 10
            digit = 0
        elif ch == "百":
            total += (digit or 1) * 100
            digit = 0
        else:
            return None
    return total + digit or None


def _count(word: str) -> int | None:
    word = word.strip()
    if word.isdigit():
        return int(word)
    return _EN_NUMBERS.get(word) or _KO_NUMBERS.get(word) or _kanji_number(word)


def _alternation(words: Iterable[str]) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


# --- what a message says -----------------------------------------------------------------

_CONNECT = r"\s*(?:(?:=|:|\bto\b|\bof\b|\bis\b|\bat\b|수는|수를|수|은요|는요|은|는|을|를|数は|数を|は|を|が)\s*)?"
_HYPER_WORDS = {
    "epochs": r"(?<![a-z])epochs?(?![a-z])|에폭|에포크|エポック数?",
    "batch_size": r"batch[\s_-]?size|(?<![a-z])(?:batch|bs)(?![a-z])|배치\s*(?:사이즈|크기)|배치|バッチサイズ|バッチ",
    "learning_rate": r"learning[\s_-]?rate|(?<![a-z])lr(?![a-z])|학습률|러닝\s*레이트|学習率",
    "image_size": r"(?:image|img|input)[\s_-]?size|이미지\s*(?:크기|사이즈)|입력\s*크기|画像サイズ|入力サイズ",
}
_OPTIMIZER = re.compile(r"(?<![a-z])(adamw|adam|sgd)(?![a-z])")

_DETECT = re.compile(
    r"detect|detector|bounding\s*box|탐지|검출|감지|디텍션|객체\s*인식|検出|検知|ディテクション"
)
_OBJECT_DETECTION = re.compile(r"object\s*detection|객체\s*(?:탐지|검출|인식)|物体検出")
_CLASSIFY = re.compile(
    r"classif|categori[sz]|recogni[sz]e|tell\s+apart|distinguish|differentiate|identify|"
    r"sort\s+(?:(?:images|pictures|photos|them)\s+)?into|분류|구분|구별|판별|分類|識別|判別|見分け|仕分け"
)

_COUNT_UNITS_EN = r"kinds?|types?|class(?:es)?|categor(?:y|ies)|species|breeds?|sorts?|labels?|varieties|variety|groups?"
_COUNTS = {
    "en": re.compile(
        rf"(?<![\w.])({_alternation(_EN_NUMBERS)}|\d+)(?:-|\s+)(?:(?:different|distinct|separate|unique)\s+)?"
        rf"(?:[a-z]+\s+)?(?:{_COUNT_UNITS_EN})\b"
    ),
    "ko": re.compile(
        rf"(?:(?<![가-힣])({_alternation(_KO_NUMBERS)})|(?<!\d)(\d+))\s*(?:개\s*의?\s*)?"
        r"(?:가지|종류|클래스|카테고리|범주|부류|종(?![가-힣]))|"
        r"(?:클래스|품종|종류|카테고리|라벨|레이블|범주)\s*(?:개수|수)?\s*(?:는|은|가|이|:)?\s*"
        rf"(?:(?<![가-힣])({_alternation(_KO_NUMBERS)})|(?<!\d)(\d+))\s*개"
    ),
    "ja": re.compile(
        r"([〇一二三四五六七八九十百]+|(?<!\d)\d+)\s*(?:つの)?\s*(?:種類|クラス|カテゴリー?|種)"
    ),
}
_DOMAIN_WORDS_KO = {"종류", "가지", "품종", "종"}
_STOP_ITEMS = {
    "object", "objects", "thing", "things", "image", "images", "picture", "pictures", "photo",
    "photos", "stuff", "them", "it", "객체", "물체", "이미지", "사진", "것", "대상", "모델",
    "物体", "画像", "もの", "写真", "モデル", "対象",
}  # fmt: skip
_LIST_SEPARATORS = re.compile(
    r"\s*(?:,|、|;|/|・|&)\s*|\s+(?:and|or|vs\.?|versus)\s+|\s*및\s*", re.IGNORECASE
)
_JA_JOIN = re.compile(r"(?<=[^\s、,])(?:と|や)(?=[^\s、,])")
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

_CONFIRM = re.compile(
    r"^(?:(?:yes|yep|yeah|sure|ok|okay|go|go ahead|start|start training|start it|let'?s go|"
    r"do it|please|네|넵|예|응|좋아요?|그래요?|시작|시작해|시작해요|시작해줘|시작해 주세요|"
    r"시작해주세요|시작할게요|시작하자|학습 시작|학습시작|ㅇㅇ|오케이|はい|ええ|お願いします|開始|"
    r"開始して|開始してください|スタート|学習開始|学習を開始|始めて|始めてください|いいです|オッケー)"
    r"[\s,.!。、~]*)+$"
)


def _confirms(text: str) -> bool:
    """A short "yes, start" (a confirmation is never long: nothing long is even tried)."""
    return len(text) <= 200 and _CONFIRM.match(text) is not None


def _is_hangul(ch: str) -> bool:
    return "가" <= ch <= "힣"


def _batchim(ch: str) -> bool:
    """Whether a Hangul syllable ends in a consonant (which particle follows it)."""
    return _is_hangul(ch) and (ord(ch) - 0xAC00) % 28 != 0


def _ko_join(word: str) -> tuple[str, bool]:
    """``word`` without a joining particle ("고양이랑" -> "고양이", True)."""
    for suffix, after_consonant in (("랑", None), ("하고", None), ("과", True), ("와", False)):
        base = word[: -len(suffix)]
        if (
            word.endswith(suffix)
            and base
            and (after_consonant is None or _batchim(base[-1]) == after_consonant)
        ):
            return base, True
    return word, False


_KO_TAIL = re.compile(
    r"(?:이에요|예요|입니다|이고요|이고|이며|이요|이야|으로|로|에요|야|요|을|를|은|는)$"
)
_KO_PARTICLES = {"을": True, "은": True, "를": False, "는": False}


def _ko_clean(word: str) -> str:
    """A Korean item without the particle or copula that ends it ("장미를" -> "장미")."""
    for _ in range(2):
        m = _KO_TAIL.search(word)
        if not m or m.start() == 0:
            break
        tail, base = m.group(), word[: m.start()]
        need = _KO_PARTICLES.get(tail)
        if need is not None and _batchim(base[-1]) != need:
            break
        if tail in ("로", "으로") and (_batchim(base[-1]) != (tail == "으로")):
            break
        word = base
    return word


def _ja_clean(word: str) -> str:
    return re.sub(r"(?:です|でお願いします|にします|をお願いします|で|を|は|が|の)$", "", word)


def _items(chunk: str, lang: Language) -> list[str]:
    """The items of a list as written ("a, b and c", "고양이랑 강아지", "犬と猫")."""
    parts = [p for p in _LIST_SEPARATORS.split(chunk) if p and p.strip()]
    out: list[str] = []
    for part in parts:
        if _CJK.search(part) and not re.search(r"[가-힣]", part):
            out += [p for p in _JA_JOIN.split(part) if p.strip()]
        elif re.search(r"[가-힣]", part):
            words, cur = part.split(), []
            for i, w in enumerate(words):
                base, joined = _ko_join(w) if i < len(words) - 1 else (w, False)
                cur.append(base)
                if joined:
                    out.append(" ".join(cur))
                    cur = []
            if cur:
                out.append(" ".join(cur))
        else:
            out.append(part)
    latin = not _CJK.search(chunk) and not re.search(r"[가-힣]", chunk)
    if latin and len(out) >= 3 and all(len(x.split()) == 1 for x in out[:-1]):
        last = out[-1].split()
        if len(last) == 2:  # "ripe, unripe and rotten bananas": one noun the list shares
            out[-1] = last[0]
    cleaned = []
    for item in out:
        item = item.strip(" \t'\"\u201c\u201d\u2018\u2019「」『』()[]。.!?:")
        item = re.sub(r"^(?:the|a|an|some|all|any)\s+", "", item, flags=re.IGNORECASE)
        if re.search(r"[가-힣]", item):
            item = _ko_clean(item)
        elif _CJK.search(item):
            item = _ja_clean(item)
        item = re.sub(r"\s+(?:please|pls)$", "", item, flags=re.IGNORECASE).strip()
        if item and item.lower() not in _STOP_ITEMS and len(item) <= MAX_CLASS_NAME:
            cleaned.append(item)
    return list(dict.fromkeys(cleaned))


@dataclass
class _Text:
    """A message as the rules read it: NFKC-normalised, lower-cased, and a working copy
    in which what has been read is masked (``¦``), so nothing is read twice."""

    norm: str
    low: str
    work: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, text: str) -> _Text:
        norm = unicodedata.normalize("NFKC", text).strip()
        low = norm.lower()
        if len(low) != len(norm):  # a character whose lower case is longer: read it lowered
            norm = low
        return cls(norm, low, list(low))

    @property
    def masked(self) -> str:
        return "".join(self.work)

    def mask(self, start: int, end: int) -> None:
        self.work[start:end] = "¦" * (end - start)


def parse(
    text: str, ctx: ParseContext | None = None, models: ModelCatalogue | None = None
) -> Parsed:
    """What ``text`` states, read by rules."""
    ctx = ctx or ParseContext()
    models = models or ModelCatalogue.default()
    t = _Text.of(text)
    lang = detect_language(text, ctx.language)
    out = Parsed(language=lang)
    found = out.intent
    _hyperparameters(t, out)
    _model(t, out, models)
    _dataset(t, out, ctx)
    _task(t, out, models)
    _classes(t, out, ctx, lang)
    _pending_answers(t, out, ctx, models)
    opt = _OPTIMIZER.search(t.low)
    if opt:
        found.optimizer = opt.group(1)
    stated = found.stated()
    out.confirm = not stated and not out.unknown_model and _confirms(t.low)
    core = sum(
        k in stated for k in ("task_type", "model", "num_classes", "class_names", "dataset_id")
    )
    out.confidence = (
        round(min(0.95, 0.5 + 0.1 * core + 0.05 * (len(stated) - core)), 2) if stated else 0.3
    )
    return out


def _hyperparameters(t: _Text, out: Parsed) -> None:
    for after in (True, False):
        for name, words in _HYPER_WORDS.items():
            if getattr(out.intent, name) is not None or name in out.invalid:
                continue
            pattern = rf"(?:{words}){_CONNECT}{_NUMBER}" if after else rf"{_NUMBER}\s*(?:{words})"
            m = re.search(pattern, t.masked)
            if m:
                _set_number(out, name, m.group(1))
                t.mask(*m.span())
    if out.intent.image_size is None:
        m = re.search(r"(?<!\d)(\d{2,4})\s*[x\u00d7]\s*(\d{2,4})(?!\d)", t.masked)
        if m and m.group(1) == m.group(2):
            _set_number(out, "image_size", m.group(1))
            t.mask(*m.span())


def _set_number(out: Parsed, name: str, raw: str) -> None:
    try:
        value: float = float(raw)
    except ValueError:
        out.invalid[name] = raw
        return
    low, high = BOUNDS[name]
    integral = name != "learning_rate"
    if not math.isfinite(value) or not low <= value <= high or (integral and value != int(value)):
        out.invalid[name] = raw
        return
    setattr(out.intent, name, int(value) if integral else value)


_TOKEN = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_SIZE_TOKEN = re.compile(r"v?\d+[a-z]?|tiny|small|base|large|nano|medium|huge|[nsmlx]")


def _model(t: _Text, out: Parsed, models: ModelCatalogue) -> None:
    work = t.masked
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(work)]
    for i in range(len(tokens)):
        for k in (3, 2, 1):
            span = tokens[i : i + k]
            if len(span) < k or any(work[a[1] : b[0]].strip() for a, b in itertools.pairwise(span)):
                continue
            entry = models.resolve("".join(s[2] for s in span))
            if entry:
                out.intent.model, out.intent.framework = entry.name, entry.framework
                t.mask(span[0][0], span[-1][1])
                return
    for i, (start, end, raw) in enumerate(tokens):
        if models.family(_key(raw), raw) is None or re.fullmatch(r"\d+", raw):
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt and not work[end : nxt[0]].strip() and _SIZE_TOKEN.fullmatch(nxt[2]):
            end = nxt[1]
        out.unknown_model = t.norm[start:end]
        t.mask(start, end)
        return


_DATASET_WORD = re.compile(r"dataset|data\s*set|(?<![a-z])data(?![a-z])|데이터|データ")
# A name used as training data: "catsを使って", "cats로 학습", "train on cats".
_USED_AFTER = re.compile(
    r"\s*(?:を使|を用い|で学習|を学習|[을를]\s*(?:써|사용|이용)|(?:으로|로)\s*(?:학습|훈련))"
)
_USED_BEFORE = re.compile(r"(?:\bon|\busing|\buse|\bfrom)\s+(?:the\s+|my\s+)?$")
_MENTIONS = {
    "en": (
        r"(?:dataset|data\s*set|data)\s*(?:called|named|is|:|=)?\s*[\"'“]?([a-z0-9][\w\-./]*)",
        r"(?:on|using|use|from|with)\s+(?:the\s+|my\s+)?[\"'“]?([a-z0-9][\w\-./]*)[\"'”]?\s+(?:dataset|data)\b",
    ),
    "ko": (
        r"([a-z0-9][a-z0-9_\-./]*|[가-힣]+)\s*(?:데이터셋|데이터)",
        r"(?:데이터셋|데이터)\s*(?:은|는|:)\s*([a-z0-9][a-z0-9_\-./]*|[가-힣]+)",
    ),
    "ja": (
        r"([a-z0-9][a-z0-9_\-./]*|[\u30a0-\u30ff\u4e00-\u9fff]+)\s*の?\s*(?:データセット|データ)",
        r"(?:データセット|データ)\s*(?:は|:)\s*([a-z0-9][a-z0-9_\-./]*|[\u30a0-\u30ff\u4e00-\u9fff]+)",
    ),
}
_MENTION_STOP = {
    "my", "the", "a", "this", "that", "your", "our", "and", "with", "to", "for", "of", "is",
    "set", "own", "new", "training", "train", "이", "그", "내", "제", "우리", "학습", "훈련",
    "この", "その", "学習",
}  # fmt: skip


def _dataset(t: _Text, out: Parsed, ctx: ParseContext) -> None:
    work = t.masked
    answering = "dataset" in ctx.pending
    best: tuple[int, int, DatasetRef] | None = None
    for d in sorted(ctx.datasets, key=lambda d: -len(d.name)):
        name = unicodedata.normalize("NFKC", d.name).lower().strip()
        if not name:
            continue
        for m in re.finditer(re.escape(name), work):
            s, e = m.span()
            edge = r"[a-z0-9_\-]"
            if (re.match(edge, name[0]) and s and re.match(edge, work[s - 1])) or (
                re.match(edge, name[-1]) and e < len(work) and re.match(edge, work[e])
            ):
                continue
            near = work[max(0, s - 14) : s] + " " + work[e : e + 14]
            distinctive = bool(re.search(r"[-_./0-9\s]", name))
            used = _USED_AFTER.match(work, e) or _USED_BEFORE.search(work[max(0, s - 20) : s])
            named = _DATASET_WORD.search(near) or _DATASET_WORD.search(name)
            if answering or distinctive or used or named:
                if best is None or s < best[0]:
                    best = (s, e, d)
                break
    if best:
        out.intent.dataset_id, out.intent.dataset_name = best[2].id, best[2].name
        t.mask(best[0], best[1])
        return
    if ctx.datasets and any(d.id == t.norm.strip() for d in ctx.datasets):
        d = next(d for d in ctx.datasets if d.id == t.norm.strip())
        out.intent.dataset_id, out.intent.dataset_name = d.id, d.name
        return
    for pattern in _MENTIONS[out.language] + (_MENTIONS["en"] if out.language != "en" else ()):
        for m in re.finditer(pattern, work):
            raw = t.norm[m.start(1) : m.end(1)].strip(".,")
            raw = _ko_clean(raw) if re.search(r"[가-힣]", raw) else raw
            if raw and raw.lower() not in _MENTION_STOP and "¦" not in m.group(1):
                out.dataset_mention = raw
                t.mask(*m.span(1))
                return


_NOT_AFTER = re.compile(r"\s*(?:말고|아니고|아니라|대신|じゃなく|ではなく|でなく|以外)")
_NOT_BEFORE = re.compile(r"(?:\bnot|\bno|instead\s+of|rather\s+than)\s+(?:an?\s+)?$")


def _affirmed(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The first match of ``pattern`` not negated ("분류 말고", "not detection")."""
    for m in pattern.finditer(text):
        word_end = re.match(r"[\w-]*", text[m.end() :]).end() + m.end()
        if not _NOT_AFTER.match(text, word_end) and not _NOT_BEFORE.search(text[: m.start()]):
            return m
    return None


def _task(t: _Text, out: Parsed, models: ModelCatalogue) -> None:
    det, cls = _affirmed(_DETECT, t.low), _affirmed(_CLASSIFY, t.low)
    task: TaskType | None = None
    if _affirmed(_OBJECT_DETECTION, t.low) or (det and (not cls or det.start() < cls.start())):
        task = "detection"
    elif cls:
        task = "classification"
    entry = models.resolve(out.intent.model) if out.intent.model else None
    if task is None and entry is not None:
        task = default_task(entry)
    out.intent.task_type = task


def _classes(t: _Text, out: Parsed, ctx: ParseContext, lang: Language) -> None:
    work = t.masked
    count = _COUNTS[lang].search(work) or next(
        (m for lg, p in _COUNTS.items() if lg != lang for m in [p.search(work)] if m), None
    )
    stated: int | None = None
    if count:
        stated = _count(next(g for g in count.groups() if g))
        if (
            stated is not None
            and not BOUNDS["num_classes"][0] <= stated <= BOUNDS["num_classes"][1]
        ):
            out.invalid["num_classes"] = count.group()
            stated = None
    names = (
        _marker_list(t, lang)
        or (_list_before_count(t, count, stated, lang) if count and stated else None)
        or _object_list(t, out, lang)
    )
    if names:
        out.intent.class_names = names[:MAX_CLASSES]
        out.intent.num_classes = len(out.intent.class_names)
    elif stated is not None:
        out.intent.num_classes = stated
    if count:
        t.mask(*count.span())


_MARKERS = {
    "en": (
        r"(?:classes|class\s+names|labels|categories|targets?)\s*(?:are|:|=|would be|will be|should be|-)\s*",
        r"[.;!?\n¦]|\s(?:with|using|on|in|for|from)\s|$",
    ),
    "ko": (
        r"(?:클래스|라벨|레이블|카테고리|범주|종류|대상)\s*(?:는|은|:|=)\s*",
        r"[.!?\n¦]|\s*데이터|\s그리고\s|(?:이고|이며)(?:\s|,|$)|$",
    ),
    "ja": (
        r"(?:クラス|ラベル|カテゴリー?|種類|対象)\s*(?:は|:|=)\s*",
        r"[。.!?\n¦]|の?\s*(?:\d+|[一二三四五六七八九十]+)\s*(?:つ|種類|個|クラス)|です|でお願い|データ|$",
    ),
}


def _marker_list(t: _Text, lang: Language) -> list[str] | None:
    work = t.masked
    for lg in (lang, *(x for x in _MARKERS if x != lang)):
        start_re, end_re = _MARKERS[lg]
        for m in re.finditer(start_re, work):
            end = re.compile(end_re).search(work, m.end())
            stop = end.start() if end else len(work)
            items = _items(t.norm[m.end() : stop], lang)
            if items:
                t.mask(m.start(), stop)
                return items
    return None


def _list_before_count(t: _Text, count: re.Match, stated: int, lang: Language) -> list[str] | None:
    work = t.masked
    start = max(work.rfind(ch, 0, count.start()) for ch in ".!?。\n¦:") + 1
    items = _items(t.norm[start : count.start()], lang)
    if len(items) == stated >= 2:
        t.mask(start, count.start())
        return items
    return None


_VERBS = {
    "en": re.compile(
        r"(?<![a-z])(?:classify(?:ing)?|distinguish(?:ing)?(?:\s+between)?|tell\s+apart|"
        r"differentiate(?:\s+between)?|sort(?:ing)?\s+(?:(?:images|pictures|photos|them)\s+)?into|"
        r"categori[sz]e|recogni[sz]e|identify|detect(?:s|ing)?|detector\s+(?:for|of)|"
        r"detection\s+(?:of|for)|"
        r"(?P<find>find|spot|locate))\s+"
    ),
    "ko": re.compile(r"(?:분류|구분|구별|판별|탐지|검출|감지|(?P<find>찾))"),
    "ja": re.compile(
        r"(?:を|の)\s*(?P<count>(?:[一二三四五六七八九十\d]+\s*(?:種類|クラス|つ)に?\s*)?)"
        r"(?:分類|識別|判別|見分け|仕分け|検出|検知)"
    ),
}
_EN_END = re.compile(
    r"[.;!?\n¦]|,\s*(?:and\s+)?(?:with|using|use|batch|lr|learning|epochs?|train|dataset|data)\b|"
    r"\s(?:in|on|with|using|at|from|for|by|into|to|that|which|so|because|please|images|pictures|photos)\b"
)
_KO_GENERIC = {"사진", "이미지", "그림", "영상", "사진들", "이미지들"}
_KO_STOP_WORD = re.compile(
    r"¦|(?:으로|로|에서|에게|써서|사용해서|이용해서|가지고)$|^(?:데이터|모델|학습)|[.!?]$|"
    r"^(?:말고|아니고|아니라|대신)$"
)


def _object_list(t: _Text, out: Parsed, lang: Language) -> list[str] | None:
    """The objects of "classify X and Y" / "detect X" (one is enough to detect)."""
    work = t.masked
    minimum = 1 if out.intent.task_type == "detection" else 2
    for m in _VERBS[lang].finditer(work):
        if m.groupdict().get("find") and out.intent.task_type != "detection":
            continue
        if lang == "en":
            end = _EN_END.search(work, m.end())
            chunk = (m.end(), end.start() if end else len(work))
        elif lang == "ja":
            if m.group("count"):
                continue
            pre = work[: m.start()]
            start = max(pre.rfind(ch) for ch in "でがはにをもて。!?¦ \n") + 1
            chunk = (start, m.start())
        else:
            chunk = _ko_object(work, m.start())
            if chunk is None:
                continue
        text = t.norm[chunk[0] : chunk[1]]
        if _COUNTS[lang].search(t.low[chunk[0] : chunk[1]]):
            continue
        items = _items(text, lang)
        if len(items) >= minimum and all(len(i.split()) <= 4 for i in items):
            return items
    return None


def _ko_object(work: str, verb: int) -> tuple[int, int] | None:
    """Where the object of a Korean verb at ``verb`` lies: its last word, and the words
    before it joined to it by commas or particles ("장미, 튤립, 해바라기를 구분")."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^\s,、]+|[,、]", work[:verb])]
    if not spans:
        return None
    words = [work[s:e] for s, e in spans]
    i = len(words) - 1
    while i > 0 and _ko_clean(words[i]) in _KO_GENERIC:  # "피자랑 햄버거 사진을 분류"
        i -= 1
    if _KO_STOP_WORD.search(words[i]) or _ko_clean(words[i]) in _DOMAIN_WORDS_KO:
        return None
    first = i
    while first > 0:
        prev = words[first - 1]
        if prev in (",", "、"):
            first -= 2 if first >= 2 else 1
        elif _ko_join(prev)[1] and not _KO_STOP_WORD.search(prev):
            first -= 1
        else:
            break
        if _KO_STOP_WORD.search(words[first]):
            first += 1
            break
    return spans[max(first, 0)][0], spans[i][1]


def _pending_answers(t: _Text, out: Parsed, ctx: ParseContext, models: ModelCatalogue) -> None:
    """A short answer to the question asked last: a list of classes, a dataset's name or
    a number for a hyperparameter."""
    found = out.intent
    rest = re.sub(r"[¦\s]+", " ", t.masked).strip()
    if "class_names" in ctx.pending and found.class_names is None and rest:
        items = _items(t.norm if "¦" not in t.masked else _unmasked(t), out.language)
        single = len(items) == 1 and len(ctx.pending) == 1 and len(items[0].split()) <= 3
        if (len(items) >= 2 or single) and not _confirms(t.low):
            found.class_names = items[:MAX_CLASSES]
            found.num_classes = len(found.class_names)
            return
    for name in HYPERPARAMETERS:
        if name in ctx.pending and getattr(found, name) is None:
            m = re.fullmatch(rf"\s*{_NUMBER}\s*(?:epochs?|에폭|エポック)?\s*", rest)
            if m:
                _set_number(out, name, m.group(1))
                return
    if (
        "dataset" in ctx.pending
        and found.dataset_id is None
        and out.dataset_mention is None
        and re.fullmatch(r"[^\s]{1,100}", rest)
    ):
        word = _ko_clean(rest) if re.search(r"[가-힣]", rest) else _ja_clean(rest)
        if not models.resolve(word) and not _confirms(word):
            at = t.low.find(word)
            out.dataset_mention = t.norm[at : at + len(word)] if at >= 0 else word


def _unmasked(t: _Text) -> str:
    """The parts of the message not read yet (a list answer beside a dataset's name)."""
    return " , ".join(
        t.norm[m.start() : m.end()] for m in re.finditer(r"[^¦]+", t.masked) if m.group().strip()
    )


# --- an answer from a language model (the Bedrock adapter) -------------------------------

INTENT_TOOL = "record_training_intent"
INTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The training the user asks for in this message; omit what it does not say.",
    "properties": {
        "task_type": {
            "type": "string",
            "enum": ["classification", "detection"],
            "description": "Image classification, or object detection",
        },
        "model": {
            "type": "string",
            "description": "The model name as the user wrote it (e.g. resnet50, yolov8n)",
        },
        "num_classes": {"type": "integer", "minimum": 1, "maximum": 1000},
        "class_names": {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_CLASS_NAME},
            "maxItems": MAX_CLASSES,
            "description": "The classes to learn, in the user's words",
        },
        "dataset": {
            "type": "string",
            "description": "The name of one of the user's datasets listed in the prompt",
        },
        "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1024},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "optimizer": {"type": "string", "enum": ["adamw", "adam", "sgd"]},
        "image_size": {"type": "integer", "minimum": 32, "maximum": 1536},
        "confirm": {
            "type": "boolean",
            "description": "True when the message only agrees to start the training",
        },
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


def prompt(text: str, ctx: ParseContext) -> str:
    """The user turn sent to a language model: the message and what it is read against."""
    names = ", ".join(f'"{d.name}"' for d in ctx.datasets[:50]) or "(none)"
    pending = ", ".join(ctx.pending) or "(none)"
    return (
        f"The user's datasets: {names}\nFields the assistant asked for last: {pending}\n"
        f"Record the training this message asks for with {INTENT_TOOL}.\n"
        f"<message>\n{text}\n</message>"
    )


def from_fields(
    fields: Any, text: str, ctx: ParseContext | None = None, models: ModelCatalogue | None = None
) -> Parsed:
    """A model's tool input as a :class:`Parsed`, checked as the rules check theirs: the
    model against the catalogue, the dataset among the user's, numbers within bounds.
    Raises ValueError when it is not an object."""
    if not isinstance(fields, dict):
        raise ValueError("the tool input is not an object")
    ctx = ctx or ParseContext()
    models = models or ModelCatalogue.default()
    out = Parsed(language=detect_language(text, ctx.language))
    found = out.intent
    task = fields.get("task_type")
    if isinstance(task, str) and task in TASKS:
        found.task_type = fields["task_type"]
    model = fields.get("model")
    if isinstance(model, str) and model.strip():
        entry = models.resolve(model)
        if entry:
            found.model, found.framework = entry.name, entry.framework
            if found.task_type is None:
                found.task_type = default_task(entry)
        else:
            out.unknown_model = model.strip()[:100]
    names = fields.get("class_names")
    if isinstance(names, list):
        clean = [str(n).strip()[:MAX_CLASS_NAME] for n in names if str(n).strip()]
        if clean:
            found.class_names = list(dict.fromkeys(clean))[:MAX_CLASSES]
            found.num_classes = len(found.class_names)
    for name in ("num_classes", *HYPERPARAMETERS):
        value = fields.get(name)
        if name == "num_classes" and found.num_classes is not None:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            if name == "num_classes":
                low, high = BOUNDS[name]
                if low <= value <= high and value == int(value):
                    found.num_classes = int(value)
                else:
                    out.invalid[name] = str(value)
            else:
                _set_number(out, name, str(value))
    if fields.get("optimizer") in ("adamw", "adam", "sgd"):
        found.optimizer = fields["optimizer"]
    dataset = fields.get("dataset")
    if isinstance(dataset, str) and dataset.strip():
        wanted = unicodedata.normalize("NFKC", dataset).strip().lower()
        d = next(
            (
                d
                for d in ctx.datasets
                if unicodedata.normalize("NFKC", d.name).strip().lower() == wanted
                or d.id == dataset
            ),
            None,
        )
        if d:
            found.dataset_id, found.dataset_name = d.id, d.name
        else:
            out.dataset_mention = dataset.strip()[:200]
    out.confirm = bool(fields.get("confirm")) and not found.stated()
    confidence = fields.get("confidence")
    out.confidence = (
        float(confidence) if isinstance(confidence, int | float) and 0 <= confidence <= 1 else 0.8
    )
    return out


class RulesParser:
    """The intent parser port's offline adapter: :func:`parse`."""

    def __init__(self, models: ModelCatalogue | None = None) -> None:
        self.models = models

    def parse(self, text: str, context: ParseContext) -> Parsed:
        return parse(text, context, self.models)


# --- a conversation's intent -------------------------------------------------------------


def merge(intent: Intent, parsed: Parsed) -> Intent:
    """``intent`` with what ``parsed`` states on top; an unknown model replaces the
    model (so it is asked again), a new class count drops class names that disagree."""
    new = parsed.intent.stated()
    merged = intent.model_copy(update=new)
    if parsed.unknown_model:
        merged.model = merged.framework = None
    stale = intent.class_names is not None and len(intent.class_names) != new.get("num_classes")
    if "class_names" not in new and "num_classes" in new and stale:
        merged.class_names = None
    if parsed.dataset_mention and "dataset_id" not in new:
        merged.dataset_id = merged.dataset_name = None
    return merged


@dataclass
class Review:
    """An intent checked against the catalogue and the user's datasets."""

    intent: Intent  # with what the dataset supplies (class names)
    missing: list[str]  # fields to ask for, in order
    notes: list[tuple[str, dict[str, Any]]]  # what to tell the user (TEXT keys + values)
    dataset: DatasetRef | None = None

    @property
    def complete(self) -> bool:
        return not self.missing


def formats_for(task: str, framework: str | None) -> tuple[str, ...]:
    internal = TASKS[task]
    found: list[str] = []
    for name, spec in catalogue.FRAMEWORKS.items():
        if (framework is None or name == framework) and internal in spec["tasks"]:
            found += [f for f in spec["tasks"][internal][1] if f not in found]
    return tuple(found)


def review(
    intent: Intent,
    datasets: Sequence[DatasetRef],
    parsed: Parsed | None = None,
    models: ModelCatalogue | None = None,
) -> Review:
    models = models or ModelCatalogue.default()
    it = intent.model_copy(deep=True)
    notes: list[tuple[str, dict[str, Any]]] = []
    missing: list[str] = []
    entry = models.resolve(it.model) if it.model else None
    if it.model and entry is None:  # left the catalogue since it was chosen
        it.model = it.framework = None
    if entry and it.task_type is None:
        it.task_type = default_task(entry)
    if entry and it.task_type and it.task_type not in entry.tasks:
        notes.append(("model_task", {"model": entry.name, "task": it.task_type}))
        it.model = it.framework = None
        entry = None
    if parsed and parsed.unknown_model:
        notes.append(("unknown_model", {"model": parsed.unknown_model}))
    dataset = next((d for d in datasets if d.id == it.dataset_id), None) if it.dataset_id else None
    if it.dataset_id and dataset is None:
        it.dataset_id = it.dataset_name = None
    if dataset is not None and dataset.status != "ready":
        notes.append(("dataset_not_ready", {"dataset": dataset.name, "status": dataset.status}))
        dataset, it.dataset_id, it.dataset_name = None, None, None
    if dataset is not None and it.task_type:
        wanted = formats_for(it.task_type, entry.framework if entry else None)
        if dataset.format not in wanted:
            notes.append(
                (
                    "dataset_format",
                    {"dataset": dataset.name, "format": dataset.format, "task": it.task_type,
                     "formats": " / ".join(wanted)},
                )
            )  # fmt: skip
            dataset, it.dataset_id, it.dataset_name = None, None, None
    if parsed and parsed.dataset_mention and it.dataset_id is None:
        notes.append(("dataset_unknown", {"dataset": parsed.dataset_mention}))
    if dataset is not None:
        it.dataset_name = dataset.name
        classes = list(dataset.classes)
        if it.class_names is None:
            it.class_names = classes
            if it.num_classes is not None and classes and it.num_classes != len(classes):
                notes.append(
                    (
                        "class_count",
                        {"dataset": dataset.name, "n": len(classes), "stated": it.num_classes},
                    )
                )
            it.num_classes = len(classes) or it.num_classes
        elif classes and {c.lower() for c in it.class_names} != {c.lower() for c in classes}:
            notes.append(
                ("class_mismatch", {"dataset": dataset.name, "classes": ", ".join(classes[:20])})
            )
    if it.class_names is not None and it.num_classes is None:
        it.num_classes = len(it.class_names)
    for name in REQUIRED:
        value = it.dataset_id if name == "dataset" else getattr(it, name)
        if value is None:
            missing.append(name)
    for name, raw in (parsed.invalid if parsed else {}).items():
        if name in HYPERPARAMETERS or name == "num_classes":
            notes.append(
                (
                    "invalid",
                    {"field": name, "value": raw, "low": BOUNDS[name][0], "high": BOUNDS[name][1]},
                )
            )
            if name in HYPERPARAMETERS and name not in missing:
                missing.append(name)
    return Review(it, missing, notes, dataset)


def _defaults(framework: str) -> dict[str, Any]:
    preset = catalogue.PRESETS.get(framework, {}).get("basic", {})
    return {
        "epochs": preset.get("epochs", 10),
        "batch_size": preset.get("batch_size", 16),
        "learning_rate": preset.get("learning_rate", 1e-3),
        "optimizer": "adamw",
    }


def training_config(r: Review) -> dict[str, Any]:
    """Seed 003's ``training_config`` of a complete intent; also carries ``framework``,
    ``model`` and ``dataset_id`` at the top, the shape POST /workflows takes as ``config``
    (stated hyperparameters other than epochs, batch size and learning rate, such as
    ``image_size``, reach the trainer as advanced settings)."""
    it = r.intent
    framework = it.framework or "timm"
    hyper = _defaults(framework)
    hyper.update(
        {
            k: v
            for k, v in it.stated().items()
            if k in ("epochs", "batch_size", "learning_rate", "optimizer")
        }
    )
    if it.image_size is not None:
        hyper["image_size"] = it.image_size
    return {
        "task_type": it.task_type,
        "model_name": it.model,
        "model_source": framework,
        "num_classes": it.num_classes,
        "class_names": it.class_names or [],
        "dataset": {"source": "uploaded", "dataset_id": it.dataset_id, "name": it.dataset_name},
        "hyperparameters": hyper,
        "framework": framework,
        "model": it.model,
        "dataset_id": it.dataset_id,
    }


def parsed_intent(r: Review, confidence: float) -> dict[str, Any]:
    """Seed 003's ``parsed_intent``: what is known so far, and how sure the parse was."""
    it = r.intent
    out: dict[str, Any] = {
        "task_type": it.task_type,
        "model": it.model,
        "num_classes": it.num_classes,
        "class_names": it.class_names,
        "dataset": it.dataset_name,
        "dataset_id": it.dataset_id,
        "epochs": it.epochs,
        "batch_size": it.batch_size,
        "learning_rate": it.learning_rate,
        "optimizer": it.optimizer,
        "image_size": it.image_size,
    }
    return {**{k: v for k, v in out.items() if v is not None}, "confidence": confidence}


# --- what the assistant says -------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "ko": {
        "task_type": "어떤 작업을 할까요? 이미지 분류(classification)와 객체 탐지(detection) 중에서 골라 주세요.",
        "model": "어떤 모델을 사용할까요?",
        "class_names_n": "{n}종류가 구체적으로 어떤 클래스인가요?{example}",
        "class_names": "어떤 클래스들을 구분할까요?{example}",
        "example": " (예: {example})",
        "dataset": "데이터셋은 어디에 있나요?",
        "dataset_none": "데이터셋은 어디에 있나요? 아직 사용할 수 있는 데이터셋이 없어요. 먼저 데이터셋을 업로드해 주세요.",
        "epochs": "에폭 수를 다시 알려 주세요.",
        "batch_size": "배치 크기를 다시 알려 주세요.",
        "learning_rate": "학습률을 다시 알려 주세요.",
        "image_size": "이미지 크기를 다시 알려 주세요.",
        "intro": "좋아요! {summary} 몇 가지만 확인할게요.",
        "intro_plain": "좋아요! 몇 가지만 확인할게요.",
        "summary_model_n": "{model}{ro} {n}종류 {task} 모델을 만들어드릴게요.",
        "summary_model": "{model}{ro} {task} 모델을 만들어드릴게요.",
        "summary_n": "{n}종류 {task} 모델을 만들어드릴게요.",
        "summary_task": "{task} 모델을 만들어드릴게요.",
        "classification": "분류",
        "detection": "탐지",
        "complete": "모든 설정이 완료되었습니다! 학습을 시작하시겠어요?",
        "started": "학습을 시작했어요! 워크플로우 {id}의 진행 상황은 /ws/workflows/{id} 에서 실시간으로 볼 수 있어요.",
        "start_training": "학습 시작",
        "edit_config": "설정 수정",
        "unknown_model": "'{model}' 모델은 카탈로그에 없어요.",
        "model_task": "{model}{eun} {task}에 쓸 수 없는 모델이에요.",
        "dataset_unknown": "'{dataset}' 데이터셋을 찾지 못했어요.",
        "dataset_not_ready": "'{dataset}' 데이터셋은 아직 사용할 수 없어요 (상태: {status}).",
        "dataset_format": "'{dataset}' 데이터셋은 {format} 형식이라 {task}에 쓸 수 없어요 (필요한 형식: {formats}).",
        "class_count": "'{dataset}' 데이터셋에는 클래스가 {n}개 있어요 (말씀하신 건 {stated}개).",
        "class_mismatch": "참고: '{dataset}' 데이터셋의 클래스는 {classes}이고, 학습은 데이터셋의 클래스로 진행돼요.",
        "invalid": "{field} 값 {value}은(는) 쓸 수 없어요 ({low}~{high}).",
    },
    "en": {
        "task_type": "What should the model do: classify images (classification) or detect objects (detection)?",
        "model": "Which model should I use?",
        "class_names_n": "What are the {n} classes?{example}",
        "class_names": "Which classes should the model tell apart?{example}",
        "example": " (e.g. {example})",
        "dataset": "Which dataset should I train on?",
        "dataset_none": "Which dataset should I train on? You have no dataset that can be used yet: upload one first.",
        "epochs": "How many epochs?",
        "batch_size": "What batch size?",
        "learning_rate": "What learning rate?",
        "image_size": "What image size?",
        "intro": "Great! {summary} A few questions first.",
        "intro_plain": "Great! A few questions first.",
        "summary_model_n": "I'll set up a {n}-class {task} model with {model}.",
        "summary_model": "I'll set up a {task} model with {model}.",
        "summary_n": "I'll set up a {n}-class {task} model.",
        "summary_task": "I'll set up a {task} model.",
        "classification": "classification",
        "detection": "detection",
        "complete": "Everything is set! Shall I start training?",
        "started": "Training started: workflow {id}. Follow it live on /ws/workflows/{id}.",
        "start_training": "Start training",
        "edit_config": "Edit config",
        "unknown_model": "'{model}' is not in the model catalogue.",
        "model_task": "{model} cannot do {task}.",
        "dataset_unknown": "I couldn't find a dataset named '{dataset}' among yours.",
        "dataset_not_ready": "Dataset '{dataset}' cannot be used yet (it is {status}).",
        "dataset_format": "Dataset '{dataset}' is {format}; {task} needs {formats}.",
        "class_count": "Dataset '{dataset}' has {n} classes (you said {stated}).",
        "class_mismatch": "Note: dataset '{dataset}' has the classes {classes}; training uses the dataset's classes.",
        "invalid": "{field} {value} cannot be used (it must be {low} to {high}).",
    },
    "ja": {
        "task_type": "画像分類(classification)と物体検出(detection)のどちらを行いますか？",  # noqa: RUF001
        "model": "どのモデルを使いますか？",  # noqa: RUF001
        "class_names_n": "{n}種類のクラスを具体的に教えてください。{example}",
        "class_names": "どのクラスを見分けますか？{example}",  # noqa: RUF001
        "example": "(例: {example})",
        "dataset": "どのデータセットを使いますか？",  # noqa: RUF001
        "dataset_none": "どのデータセットを使いますか？使えるデータセットがまだありません。先にデータセットをアップロードしてください。",  # noqa: RUF001
        "epochs": "エポック数をもう一度教えてください。",
        "batch_size": "バッチサイズをもう一度教えてください。",
        "learning_rate": "学習率をもう一度教えてください。",
        "image_size": "画像サイズをもう一度教えてください。",
        "intro": "了解しました！{summary}いくつか確認させてください。",  # noqa: RUF001
        "intro_plain": "了解しました！いくつか確認させてください。",  # noqa: RUF001
        "summary_model_n": "{model}で{n}クラスの{task}モデルを作ります。",
        "summary_model": "{model}で{task}モデルを作ります。",
        "summary_n": "{n}クラスの{task}モデルを作ります。",
        "summary_task": "{task}モデルを作ります。",
        "classification": "分類",
        "detection": "物体検出",
        "complete": "設定がすべて完了しました！学習を開始しますか？",  # noqa: RUF001
        "started": "学習を開始しました！ワークフロー{id}の進捗は /ws/workflows/{id} でリアルタイムに確認できます。",  # noqa: RUF001
        "start_training": "学習開始",
        "edit_config": "設定を編集",
        "unknown_model": "「{model}」はモデルカタログにありません。",
        "model_task": "{model}は{task}には使えません。",
        "dataset_unknown": "「{dataset}」というデータセットが見つかりません。",
        "dataset_not_ready": "データセット「{dataset}」はまだ使えません(状態: {status})。",
        "dataset_format": "データセット「{dataset}」は{format}形式のため{task}には使えません(必要な形式: {formats})。",
        "class_count": "データセット「{dataset}」のクラスは{n}個です(指定は{stated}個)。",
        "class_mismatch": "注意: データセット「{dataset}」のクラスは{classes}で、学習はデータセットのクラスで行います。",
        "invalid": "{field}の値{value}は使えません({low}〜{high})。",
    },
}
_DIGIT_BATCHIM = {"0": True, "1": "ㄹ", "2": False, "3": True, "4": False, "5": False,
                  "6": True, "7": "ㄹ", "8": "ㄹ", "9": False}  # fmt: skip
_LETTER_BATCHIM = {"l": "ㄹ", "m": True, "n": True, "r": "ㄹ"}


def _ko_ro(word: str) -> str:
    """로 or 으로 after ``word`` (a model name: "resnet50" -> "으로", "yolo11s" -> "로")."""
    last = word[-1:].lower()
    if _is_hangul(last):
        final = (ord(last) - 0xAC00) % 28
        return "로" if final in (0, 8) else "으로"
    sound = _DIGIT_BATCHIM.get(last, _LETTER_BATCHIM.get(last, False))
    return "으로" if sound is True else "로"


def _ko_eun(word: str) -> str:
    last = word[-1:].lower()
    if _is_hangul(last):
        return "은" if _batchim(last) else "는"
    sound = _DIGIT_BATCHIM.get(last, _LETTER_BATCHIM.get(last, False))
    return "은" if sound else "는"


def say(lang: Language, key: str, **values: Any) -> str:
    text = TEXT[lang][key]
    if lang == "ko":
        values.setdefault("ro", _ko_ro(str(values.get("model", ""))))
        values.setdefault("eun", _ko_eun(str(values.get("model", ""))))
    if "task" in values and values["task"] in TASKS:
        values["task"] = TEXT[lang][values["task"]]
    return text.format(**values)


def questions(
    r: Review, lang: Language, datasets: Sequence[DatasetRef], models: ModelCatalogue | None = None,
    parsed: Parsed | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Seed 003's ``questions``: one per missing field, with suggestions from the user's
    own datasets and the catalogue."""
    models = models or ModelCatalogue.default()
    it = r.intent
    usable = [
        d
        for d in datasets
        if d.status == "ready"
        and (it.task_type is None or d.format in formats_for(it.task_type, it.framework))
    ]
    out = []
    for name in r.missing:
        suggestions: list[str] = []
        if name == "task_type":
            text, suggestions = say(lang, "task_type"), ["classification", "detection"]
        elif name == "model":
            text = say(lang, "model")
            if parsed and parsed.unknown_model:
                suggestions = models.suggest(parsed.unknown_model, it.task_type)
            else:
                suggestions = _popular(models, it.task_type)
        elif name == "class_names":
            matching = [
                d for d in usable if d.classes and (it.num_classes in (None, len(d.classes)))
            ]
            suggestions = [", ".join(d.classes[:20]) for d in matching[:3]]
            example = say(lang, "example", example=suggestions[0]) if suggestions else ""
            key = "class_names_n" if it.num_classes else "class_names"
            text = say(lang, key, n=it.num_classes, example=example)
        elif name == "dataset":
            text = say(lang, "dataset" if usable else "dataset_none")
            suggestions = [d.name for d in usable[:10]]
        else:
            text = say(lang, name)
        out.append(
            {
                "id": f"q{len(out) + 1}",
                "field": name,
                "question": text,
                "required": True,
                "suggestions": list(dict.fromkeys(suggestions)),
            }
        )
    return out


_POPULAR = ("resnet18", "resnet50", "efficientnet_b0", "yolov8n", "yolo11n", "yolov8s", "yolo11s")


def _popular(models: ModelCatalogue, task: str | None) -> list[str]:
    names = models.for_task(task)
    first = [n for n in _POPULAR if n in names]
    return list(dict.fromkeys([*first, *names]))[:5]


def _joined(lang: Language, parts: Iterable[str]) -> str:
    return ("" if lang == "ja" else " ").join(p for p in parts if p)


def clarification_message(r: Review, lang: Language) -> str:
    it = r.intent
    notes = _joined(lang, (say(lang, key, **values) for key, values in r.notes))
    if it.task_type:
        task = it.task_type
        if it.model and it.num_classes:
            summary = say(lang, "summary_model_n", model=it.model, n=it.num_classes, task=task)
        elif it.model:
            summary = say(lang, "summary_model", model=it.model, task=task)
        elif it.num_classes:
            summary = say(lang, "summary_n", n=it.num_classes, task=task)
        else:
            summary = say(lang, "summary_task", task=task)
        intro = say(lang, "intro", summary=summary)
    else:
        intro = say(lang, "intro_plain")
    return _joined(lang, (notes, intro))


def complete_message(r: Review, lang: Language) -> str:
    notes = (say(lang, key, **values) for key, values in r.notes)
    return _joined(lang, (*notes, say(lang, "complete")))


def actions(lang: Language) -> list[dict[str, str]]:
    return [
        {"type": "start_training", "label": say(lang, "start_training")},
        {"type": "edit_config", "label": say(lang, "edit_config")},
    ]


def edits(config: dict[str, Any], datasets: Sequence[DatasetRef], lang: Language,
          models: ModelCatalogue | None = None) -> Parsed:  # fmt: skip
    """An ``edit_config`` action's changes (seed 003's training_config keys, whole or in
    part) as a :class:`Parsed`, checked as a message's would be."""
    hyper = config.get("hyperparameters") if isinstance(config.get("hyperparameters"), dict) else {}
    dataset = config.get("dataset")
    fields = {
        "task_type": config.get("task_type"),
        "model": config.get("model_name") or config.get("model"),
        "class_names": config.get("class_names"),
        "num_classes": config.get("num_classes"),
        "dataset": (dataset.get("dataset_id") if isinstance(dataset, dict) else dataset)
        or config.get("dataset_id"),
        **{k: hyper.get(k, config.get(k)) for k in (*HYPERPARAMETERS, "optimizer")},
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    parsed = from_fields(fields, "", ParseContext(tuple(datasets), language=lang), models)
    parsed.language, parsed.confidence = lang, 1.0
    return parsed
