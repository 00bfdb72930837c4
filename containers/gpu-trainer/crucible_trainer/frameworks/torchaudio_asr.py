"""Seed 000's speech recognition on an LJSpeech-style dataset (``metadata.csv`` and
``wavs/``): ``conformer`` (CTC) or ``rnn-t``, over one torchaudio Conformer encoder.
Options from the spec: ``dim`` and ``layers`` (the encoder's size), and seed 002's knobs
but augmentation (:mod:`crucible_trainer.optim`): optimizer, schedule with warm-up,
mixed precision, gradient clipping (norm 5 unless the job says)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from crucible_trainer.inputs import BadInput
from crucible_trainer.metrics import error_rates
from crucible_trainer.optim import Stepper, optimizer, resume, schedule
from crucible_trainer.run import Outcome, Run
from crucible_trainer.spec import JobSpec
from shared.audio import InvalidAudio, decode, probe
from shared.catalogue import check_model

SAMPLE_RATE = 16_000


def asr_model(kind: str, vocab_size: int, dim: int = 144, layers: int = 4, heads: int = 4) -> Any:
    """Seed 000's models over one encoder (log-mel -> linear -> torchaudio Conformer):
    ``conformer`` adds a CTC head; ``rnn-t`` an LSTM prediction network and a joiner
    trained with torchaudio's RNN-T loss. Both decode greedily (blank is index 0) and
    share ``loss(audio, lengths, targets, target_lengths)`` and ``decode(audio, lengths)``."""
    import torch
    import torchaudio

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mel = torchaudio.transforms.MelSpectrogram(
                SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=80
            )
            self.inp = torch.nn.Linear(80, dim)
            self.conformer = torchaudio.models.Conformer(
                input_dim=dim,
                num_heads=heads,
                ffn_dim=4 * dim,
                num_layers=layers,
                depthwise_conv_kernel_size=15,
            )

        def encode(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
            feats = (self.mel(audio) + 1e-6).log().transpose(1, 2)  # (batch, frames, mels)
            frames = (lengths // 160 + 1).clamp(max=feats.shape[1])
            return self.conformer(self.inp(feats), frames)

    class CTC(Encoder):
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.nn.Linear(dim, vocab_size)
            self.ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)

        def forward(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
            x, frames = self.encode(audio, lengths)
            return self.out(x).log_softmax(-1), frames

        def loss(self, audio: Any, lengths: Any, targets: Any, target_lengths: Any) -> Any:
            log_probs, frames = self(audio, lengths)
            flat = torch.cat([t[:n] for t, n in zip(targets, target_lengths, strict=True)])
            return self.ctc(log_probs.transpose(0, 1), flat, frames, target_lengths)

        def decode(self, audio: Any, lengths: Any) -> list[list[int]]:
            """Best path: argmax per frame, repeats collapsed, blanks dropped."""
            log_probs, frames = self(audio, lengths)
            out = []
            for seq, n in zip(log_probs.argmax(-1).tolist(), frames.tolist(), strict=True):
                out.append(
                    [k for i, k in enumerate(seq[:n]) if k != 0 and (i == 0 or k != seq[i - 1])]
                )
            return out

    class RNNT(Encoder):
        def __init__(self, joint: int = 256, max_symbols: int = 5) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab_size, dim)
            self.lstm = torch.nn.LSTM(dim, dim, batch_first=True)
            self.enc_proj, self.pred_proj = torch.nn.Linear(dim, joint), torch.nn.Linear(dim, joint)
            self.joint_out = torch.nn.Linear(joint, vocab_size)
            self.max_symbols = max_symbols

        def predict(self, tokens: Any, state: Any = None) -> tuple[Any, Any]:
            x = self.embed(tokens)
            if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                # oneDNN has no bfloat16 LSTM on CPUs without AVX512-BF16 (it fails to
                # build the primitive): the small prediction network runs in float32
                with torch.autocast("cpu", enabled=False):
                    out, state = self.lstm(x.float(), state)
            else:
                out, state = self.lstm(x, state)
            return self.pred_proj(out), state

        def join(self, enc: Any, pred: Any) -> Any:
            return self.joint_out(torch.tanh(enc + pred))

        def loss(self, audio: Any, lengths: Any, targets: Any, target_lengths: Any) -> Any:
            x, frames = self.encode(audio, lengths)
            blank = targets.new_zeros((targets.shape[0], 1))
            pred, _ = self.predict(torch.cat([blank, targets], 1))  # (batch, U + 1, joint)
            logits = self.join(self.enc_proj(x)[:, :, None], pred[:, None])  # (batch, T, U + 1, V)
            return torchaudio.functional.rnnt_loss(
                logits.float(),  # the loss in float32, under mixed precision too
                targets.int(),
                frames.int(),
                target_lengths.int(),
                blank=0,
                reduction="mean",
            )

        def decode(self, audio: Any, lengths: Any) -> list[list[int]]:
            """Greedy: at each frame, emit the best symbol until blank (at most max_symbols)."""
            x, frames = self.encode(audio, lengths)
            enc = self.enc_proj(x)
            out = []
            for b in range(enc.shape[0]):
                tokens: list[int] = []
                pred, state = self.predict(torch.zeros((1, 1), dtype=torch.long, device=enc.device))
                for t in range(int(frames[b])):
                    for _ in range(self.max_symbols):
                        k = int(self.join(enc[b, t], pred[0, 0]).argmax())
                        if k == 0:
                            break
                        tokens.append(k)
                        pred, state = self.predict(torch.tensor([[k]], device=enc.device), state)
                out.append(tokens)
            return out

    return RNNT() if kind == "rnn-t" else CTC()


def load_ljspeech(root: Path) -> list[tuple[Any, str]]:
    """(samples at 16 kHz, lower-cased transcript) for each row of ``metadata.csv``."""
    items = []
    with open(root / "metadata.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
            samples, _, _ = decode(root / "wavs" / f"{row[0]}.wav", SAMPLE_RATE)
            items.append((samples.astype("float32"), row[-1].strip().lower()))
    return items


def train(spec: JobSpec, data: Path, run: Run) -> Outcome:
    import torch

    torch.manual_seed(spec.seed)
    items = load_ljspeech(data)
    vocab = ["<blank>", *sorted({ch for _, text in items for ch in text})]
    index = {ch: i for i, ch in enumerate(vocab)}
    n_val = max(1, len(items) // 10) if len(items) >= 10 else len(items)
    train_set, val_set = items[: len(items) - n_val] or items, items[len(items) - n_val :]
    dim, layers = int(spec.extras.get("dim", 144)), int(spec.extras.get("layers", 4))
    model = asr_model(spec.model_name, len(vocab), dim=dim, layers=layers)
    # The GPU when the job has one (the GPU queue's instances), the CPU otherwise.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    params = list(model.parameters())
    opt = optimizer(params, spec.knobs)
    sched = schedule(opt, spec.knobs)
    stepper = Stepper(params, opt, spec.knobs, device)

    def state(epoch: int) -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": run.best,
            "vocab": vocab,
            "framework": "torchaudio",
            "model_name": spec.model_name,
            "dim": dim,
            "layers": layers,
        }

    resumed = run.begin(state, monitor="cer", mode="min")
    if resumed:
        model.load_state_dict(resumed["model"])
        resume(opt, sched, spec.knobs, resumed, run.first_epoch)
    run.log(stepper.describe())

    def batch(rows: list) -> tuple[Any, Any, Any, Any]:
        pad = torch.nn.utils.rnn.pad_sequence
        audio = pad([torch.from_numpy(a) for a, _ in rows], batch_first=True)
        ids = [
            torch.tensor([index[ch] for ch in t if ch in index], dtype=torch.long) for _, t in rows
        ]
        lengths = torch.tensor([len(a) for a, _ in rows])
        targets, target_lengths = pad(ids, batch_first=True), torch.tensor([len(i) for i in ids])
        return tuple(t.to(device) for t in (audio, lengths, targets, target_lengths))

    size = spec.batch_size
    steps = math.ceil(len(train_set) / size)
    for epoch in run.epochs():
        model.train()
        order = torch.randperm(len(train_set)).tolist()
        total = 0.0
        for step in range(1, steps + 1):
            if run.stopping:
                run.checkpoint(epoch - 1)
                return "stopped"
            with stepper.autocast():
                loss = model.loss(
                    *batch([train_set[i] for i in order[(step - 1) * size : step * size]])
                )
            stepper.step(loss)
            total += loss.item()
            run.on_step(epoch, step, steps, loss.item(), opt.param_groups[0]["lr"])
        model.eval()
        with torch.no_grad():
            audio, lengths, targets, target_lengths = batch(val_set)
            val_loss = model.loss(audio, lengths, targets, target_lengths).item()
            hyps = ["".join(vocab[k] for k in seq) for seq in model.decode(audio, lengths)]
        wer, cer = error_rates([t for _, t in val_set], hyps)
        val = {"val_loss": val_loss, "wer": wer, "cer": cer, "sample": hyps[0][:200]}
        lr = opt.param_groups[0]["lr"]
        sched.step()
        run.on_epoch_end(epoch, total / steps, val, lr)
    return "completed"


class Model:
    """An ASR checkpoint, transcribing speech."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.vocab, self.model_name = [str(v) for v in state["vocab"]], state["model_name"]
        check_model("torchaudio", "speech_recognition", self.model_name, {})
        self.model = asr_model(
            self.model_name, len(self.vocab), dim=state["dim"], layers=state["layers"]
        )
        self.model.load_state_dict(state["model"])
        self.model.eval()

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        import torch

        try:
            probe(data)
            samples, _, _ = decode(data, SAMPLE_RATE)
        except InvalidAudio as exc:
            raise BadInput(str(exc)) from None
        audio = torch.from_numpy(samples.astype("float32"))[None]
        with torch.no_grad():
            tokens = self.model.decode(audio, torch.tensor([audio.shape[1]]))[0]
        return {
            "transcription": "".join(self.vocab[k] for k in tokens),
            "model_name": self.model_name,
            "task_type": "speech_recognition",
        }
