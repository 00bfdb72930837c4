"""Audio is bounded by duration (issue 14): probing and decoding stop at the limit, so a
small file that decodes to hours, or a header that lies about its length, costs no more
time or memory than a recording of the longest accepted length."""

import struct
import time
import tracemalloc

import numpy as np
import pytest

from shared.audio import MAX_SECONDS, InvalidAudio, decode, probe
from tests.audio.synth import cry, encode, wav_bytes


def test_the_default_limit_is_the_settings_default():
    from shared.settings import Settings

    assert Settings.model_fields["max_audio_duration_s"].default == MAX_SECONDS == 15 * 60


@pytest.fixture(scope="module")
def long_flac() -> bytes:
    """20 minutes of silence at 8 kHz: ~220 KB of FLAC, 9.6 M samples once decoded."""
    return encode(np.zeros(8000 * 1200), 8000, "flac")


def test_probe_stops_at_the_limit(long_flac):
    t = time.process_time()
    with pytest.raises(InvalidAudio, match="longer than 1 min, the longest accepted") as exc:
        probe(long_flac, max_seconds=60)
    assert exc.value.field == "file"
    bounded = time.process_time() - t
    t = time.process_time()
    assert probe(long_flac, max_seconds=1500).duration == pytest.approx(1200)
    whole = time.process_time() - t
    assert bounded < whole / 5, (bounded, whole)  # a minute's decoding, not 20 (CPU time)


def test_decode_never_holds_more_than_the_limit(long_flac):
    tracemalloc.start()
    try:
        with pytest.raises(InvalidAudio, match="longer than 1 min"):
            decode(long_flac, 8000, max_seconds=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    minute = 8000 * 60 * 8  # float64 samples
    assert peak < 3 * minute, peak  # the whole would be 20x that


def test_the_limit_is_inclusive_and_counts_decoded_time():
    three_s = wav_bytes(cry(16000, 3.0, [(0.5, 2.5, 450)]), 16000)
    samples, rate, _ = decode(three_s, 8000, max_seconds=3)
    assert rate == 8000 and abs(len(samples) - 24_000) < 100
    assert probe(three_s, max_seconds=3).duration == pytest.approx(3.0)
    with pytest.raises(InvalidAudio, match=r"longer than 2\.5 s"):
        decode(three_s, 8000, max_seconds=2.5)
    with pytest.raises(InvalidAudio, match=r"longer than 2\.5 s"):
        probe(three_s, max_seconds=2.5)


def test_a_header_that_lies_about_its_length_gets_only_what_is_there():
    """A WAV whose data chunk claims 4 GiB (a streaming writer's placeholder, or a lie)
    decodes to the second it holds; one whose rate says 100 Hz is 160 s long, too long."""
    wav = bytearray(wav_bytes(cry(16000, 1.0, [(0.1, 0.9, 450)]), 16000))
    wav[40:44] = struct.pack("<I", 0xFFFFFFFF)
    samples, _, _ = decode(bytes(wav), 16000, max_seconds=10)
    assert len(samples) == 16000
    assert probe(bytes(wav), max_seconds=10).duration == pytest.approx(1.0)
    slow = bytearray(wav_bytes(cry(16000, 1.0, []), 16000))
    slow[24:28] = struct.pack("<I", 100)
    slow[28:32] = struct.pack("<I", 200)  # byte rate, to match
    with pytest.raises(InvalidAudio, match="longer than 1 min"):
        probe(bytes(slow), max_seconds=60)
