"""ASR (seed 000) in the console, as a person uses it: add speech data, start a run from
the form, watch its progress and loss curve grow as events arrive, see WER and CER after
an epoch, stop it, and transcribe a recording with the checkpoint it left."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from tests import datasets as make
from tests.browser.conftest import canvas_is_drawn, shot, signed_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make test installs it"),
]

# Six espeak-ng utterances (as tests/e2e/test_asr.py): one step an epoch on the CPU.
TEXTS = ["hello world", "good morning", "the cat sat", "open the door", "red and blue", "one two"]
CHART = "[data-testid=loss-chart]"


def train_points(page) -> int:
    return int(page.get_attribute(CHART, "data-train-points") or 0)


@pytest.mark.timeout(900)
def test_train_watch_stop_and_transcribe(page, stack, alice, tmp_path):
    archive = make.ljspeech_espeak(TEXTS, str(tmp_path))
    signed_in(page, alice, "/asr")
    expect(page.get_by_test_id("no-run")).to_be_visible()
    expect(page.get_by_text("No speech dataset of yours is ready yet")).to_be_visible()
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_disabled()

    # Speech data through the page: an LJSpeech archive, then it is offered in the form.
    page.get_by_text("Add a speech dataset").click()
    page.get_by_label("LJSpeech archive").set_input_files(
        {"name": "lj.zip", "mimeType": "application/zip", "buffer": archive}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_label("Dataset", exact=True)).to_have_value("ljspeech", timeout=60_000)
    page.get_by_label("Model").select_option("conformer")
    expect(page.get_by_text("epochs", exact=True)).to_be_visible()  # the seed's training defaults
    start.click()

    # Live: the run appears, moves through its steps, and its loss series grows.
    expect(page.get_by_role("heading", name=re.compile(r"Run #\d+: conformer"))).to_be_visible(
        timeout=30_000
    )
    expect(page.get_by_test_id("run-status")).to_have_text(
        re.compile("queued|running"), timeout=30_000
    )
    expect(page.get_by_test_id("run-step")).to_have_text(
        re.compile(r"^\d+ / \d+$"), timeout=180_000
    )
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    expect(page.get_by_test_id("run-epoch")).to_have_text(re.compile(r"^\d+ / 20$"))
    first = train_points(page)
    assert first >= 1
    page.wait_for_function(
        "([sel, n]) => Number(document.querySelector(sel).dataset.trainPoints) > n",
        arg=[CHART, first],
        timeout=180_000,
    )
    assert canvas_is_drawn(page, f"{CHART} canvas")
    # After an epoch: its validation, with word and character error rates.
    expect(page.get_by_test_id("run-cer")).to_have_text(re.compile(r"^\d"), timeout=180_000)
    expect(page.get_by_test_id("run-wer")).to_have_text(re.compile(r"^\d"))
    expect(page.get_by_test_id("validations")).to_contain_text("1")
    # A checkpoint (every 60 s of training): what a recording is transcribed with below,
    # whether or not the stop lets the step under way finish and save another.
    expect(page.get_by_test_id("run-log")).to_contain_text("Checkpoint saved", timeout=300_000)
    expect(start).to_be_disabled()  # one run at a time
    shot(page, "asr")

    # Stop: it saves a checkpoint and ends stopped; the form may start another.
    page.get_by_role("button", name="Stop training").click()
    expect(page.get_by_test_id("run-status")).to_have_text("stopped", timeout=120_000)
    expect(page.get_by_role("button", name="Stop training")).to_have_count(0)
    expect(start).to_be_enabled()

    # Transcribe a recording with that checkpoint: the page shows what the model says.
    wav = make.espeak_wav("hello world", str(tmp_path))
    page.get_by_label("Recording to transcribe").set_input_files(
        {"name": "hello.wav", "mimeType": "audio/wav", "buffer": wav}
    )
    said, nothing = page.get_by_test_id("transcription"), page.get_by_test_id("transcription-empty")
    expect(said.or_(nothing)).to_be_visible(timeout=120_000)
    expected = alice.http.post(
        alice.http.base_url.copy_with(path="/inference"), files={"file": ("hello.wav", wav)}
    )
    assert expected.status_code == 200, expected.text
    text = expected.json()["transcription"]
    if text.strip():  # the same checkpoint, the same words
        expect(said).to_have_text(text)
    else:  # a model two epochs old may hear nothing yet: the page says so
        expect(nothing).to_be_visible()
        expect(said).to_have_count(0)
    expect(page.get_by_text("hello.wav")).to_be_visible()
    shot(page, "asr-transcribe")


def test_transcribing_without_a_model_says_so(page, stack, alice, tmp_path):
    signed_in(page, alice, "/asr")
    page.get_by_label("Recording to transcribe").set_input_files(
        {"name": "a.wav", "mimeType": "audio/wav", "buffer": make.espeak_wav("hi", str(tmp_path))}
    )
    expect(page.get_by_role("alert")).to_contain_text("No trained ASR model yet")
    expect(page.get_by_test_id("transcription")).to_have_count(0)
