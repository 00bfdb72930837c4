"""Audio probing and decoding with PyAV (its wheels carry FFmpeg: no system package).

``probe`` needs no numpy, so the API can check uploads by what the bytes decode as
(never by the extension); ``decode`` (numpy) is for the analysis image.

Both are bounded by a duration (``max_seconds``, the operator's
``max_audio_duration_s``): they stop decoding as soon as the audio passes it, so a small
file that decodes to hours (FLAC of silence, a header that lies about its length) costs
no more time or memory than a recording of the longest accepted length.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from shared.errors import InvalidInput

# FFmpeg demuxer name -> (our format name, extension, content type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("wav", "wav", "audio/wav"),
    "mp3": ("mp3", "mp3", "audio/mpeg"),
    "flac": ("flac", "flac", "audio/flac"),
    "ogg": ("ogg", "ogg", "audio/ogg"),
    "mov,mp4,m4a,3gp,3g2,mj2": ("m4a", "m4a", "audio/mp4"),
}
ACCEPTED = "wav, mp3, flac, m4a, ogg"
# The default of settings.max_audio_duration_s (15 minutes: a long cry recording); callers
# that have settings pass theirs.
MAX_SECONDS = 15 * 60


class InvalidAudio(InvalidInput):
    code = "INVALID_AUDIO"


@dataclass(frozen=True)
class AudioInfo:
    format: str
    extension: str
    content_type: str
    codec: str
    sample_rate: int
    channels: int
    duration: float
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Source = str | Path | bytes | IO[bytes]


def content_disposition(filename: str) -> str:
    """``attachment`` with the file's name as any client reads it: the name itself when
    it is plain ASCII, else an ASCII fallback plus RFC 5987's ``filename*`` in UTF-8
    (HTTP header values are Latin-1 at most: "泣き声.wav" cannot travel as it is)."""
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", filename) if " " <= ch <= "~" and ch not in '"\\'
    ).strip()
    if plain == filename:
        return f'attachment; filename="{filename}"'
    stem, dot, ext = plain.rpartition(".") if "." in plain else (plain, "", "")
    if not any(ch.isalnum() for ch in stem):
        plain = "download" + dot + ext
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _open(source: Source) -> Any:
    import av

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        return av.open(source if not isinstance(source, Path) else str(source), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidAudio(
            f"Not a readable audio file ({ACCEPTED} accepted): {exc}", field="file"
        ) from None


def _size_and_head(source: Source) -> tuple[int, bytes]:
    if isinstance(source, bytes):
        return len(source), source[:65536]
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            return Path(source).stat().st_size, f.read(65536)
    pos = source.tell()
    head = source.read(65536)
    size = source.seek(0, io.SEEK_END)
    source.seek(pos)
    return size, head


def _wav_shortfall(size: int, head: bytes) -> int:
    """Bytes the RIFF header's data chunk declares beyond the end of the file (FFmpeg
    silently clamps a truncated WAV to what is there; a user should hear about it)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            return max(0, pos + 8 + length - size) if length not in (0, 0xFFFFFFFF) else 0
        pos += 8 + length + (length & 1)
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def too_long(max_seconds: float) -> InvalidAudio:
    return InvalidAudio(
        f"The recording is longer than {_minutes(max_seconds)}, the longest accepted; "
        "split it into shorter files",
        field="file",
    )


def probe(source: Source, max_seconds: float = MAX_SECONDS) -> AudioInfo:
    """Decode the stream to learn its true length (stopping as soon as it passes
    ``max_seconds``); raise InvalidAudio on anything unusable or too long."""
    import av

    size, head = _size_and_head(source)
    if not size:
        raise InvalidAudio("The file is empty", field="file")
    with _open(source) as container:
        fmt = FORMATS.get(container.format.name)
        if fmt is None:
            raise InvalidAudio(
                f"Unsupported format '{container.format.long_name}'; accepted: {ACCEPTED}",
                field="file",
            )
        if not container.streams.audio:
            raise InvalidAudio("The file has no audio stream", field="file")
        stream = container.streams.audio[0]
        rate = stream.sample_rate or stream.codec_context.sample_rate
        samples = 0
        try:
            for frame in container.decode(stream):
                samples += frame.samples
                if samples > max_seconds * (frame.sample_rate or rate or 1):
                    raise too_long(max_seconds)
        except (av.FFmpegError, ValueError) as exc:
            raise InvalidAudio(f"The audio data is corrupt: {exc}", field="file") from None
        if not samples or not rate:
            raise InvalidAudio("The file contains no audio samples", field="file")
        duration = samples / rate
        codec = stream.codec_context.name
        missing = _wav_shortfall(size, head) if fmt[0] == "wav" else 0
        if missing > 8:  # more than one frame of padding
            raise InvalidAudio(
                f"The file is truncated: its header declares {missing} more bytes of audio "
                f"than the file holds ({duration:.2f} s present)",
                field="file",
            )
        return AudioInfo(
            format=fmt[0],
            extension=fmt[1],
            content_type=fmt[2],
            codec=codec,
            sample_rate=int(rate),
            channels=int(stream.codec_context.channels or 1),
            duration=round(duration, 6),
            samples=samples,
        )


def decode(
    source: Source, target_rate: int | None = None, max_seconds: float = MAX_SECONDS
) -> tuple[Any, int, float]:
    """Mono float64 samples at ``target_rate`` (or the native rate), the rate, and the
    fraction of clipped samples in the original (|x| >= 0.999 of full scale). Never more
    than ``max_seconds`` of them: audio that decodes longer raises InvalidAudio."""
    import av
    import numpy as np

    with _open(source) as container:
        stream = container.streams.audio[0]
        rate = int(target_rate or stream.sample_rate)
        # Planar doubles in the source layout; channels are averaged here (FFmpeg's own
        # downmix attenuates by 3 dB per channel, which would skew every level).
        resampler = av.AudioResampler(format="dblp", rate=rate)
        chunks, clipped, total, kept = [], 0, 0, 0
        limit = int(max_seconds * rate)

        def take(frames: list) -> None:
            nonlocal clipped, total, kept
            for f in frames:
                planes = f.to_ndarray()
                kept += planes.shape[-1]
                if kept > limit:  # before it is kept: memory stays within the limit
                    raise too_long(max_seconds)
                clipped += int(np.count_nonzero(np.abs(planes) >= 0.999))
                total += planes.size
                chunks.append(planes.mean(axis=0))

        try:
            for frame in container.decode(stream):
                take(resampler.resample(frame))
            take(resampler.resample(None))
        except (av.FFmpegError, ValueError) as exc:
            raise InvalidAudio(f"The audio data is corrupt: {exc}", field="file") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0)
    return samples, rate, (clipped / total if total else 0.0)
