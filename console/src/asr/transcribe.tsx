// "Transcribe a recording": pick or drop an audio file, hear it, and read what your newest
// ASR checkpoint makes of it (seed 000's POST /inference, multipart field "file").
import { useEffect, useState } from "preact/hooks";
import { request } from "../api";
import { Card, DropZone, ErrorBox, fmtBytes } from "../ui";

interface Result {
  name: string;
  size: number;
  text: string;
}

export function TranscribeCard() {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [results, setResults] = useState<Result[]>([]);
  const [audio, setAudio] = useState<string | null>(null);

  useEffect(() => () => void (audio && URL.revokeObjectURL(audio)), [audio]);

  const send = async (file: File) => {
    setError(null);
    setBusy(file.name);
    setAudio(URL.createObjectURL(file));
    try {
      const body = new FormData();
      body.append("file", file, file.name);
      const out = await request<{ transcription: string }>("POST", "inference", body);
      setResults((r) => [{ name: file.name, size: file.size, text: out.transcription ?? "" }, ...r].slice(0, 10));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const latest = results[0];
  return (
    <Card title="Transcribe a recording">
      <p class="muted">
        Your newest ASR checkpoint transcribes it: WAV, FLAC, MP3, OGG or M4A.
      </p>
      <DropZone
        data-testid="transcribe-drop"
        onFiles={(files) => send(files[0])}
      >
        Drop a recording here, or{" "}
        <label class="asr-pick">
          choose one
          <input
            type="file"
            accept="audio/*,.wav,.flac,.mp3,.ogg,.m4a"
            aria-label="Recording to transcribe"
            disabled={!!busy}
            onChange={(e) => {
              const f = e.currentTarget.files?.[0];
              e.currentTarget.value = "";
              if (f) send(f);
            }}
          />
        </label>
      </DropZone>
      {busy && <p class="muted">Transcribing {busy}…</p>}
      <ErrorBox error={error} />
      {audio && <audio class="asr-audio" controls src={audio} />}
      {latest && (
        <div class="asr-transcript">
          <div class="muted">
            {latest.name} · {fmtBytes(latest.size)}
          </div>
          {latest.text.trim() ? (
            <blockquote data-testid="transcription">{latest.text}</blockquote>
          ) : (
            <p class="notice" data-testid="transcription-empty">
              The model heard no words in it: train longer, or on more speech.
            </p>
          )}
        </div>
      )}
      {results.length > 1 && (
        <table class="asr-history">
          <thead>
            <tr>
              <th>Earlier</th>
              <th>Transcription</th>
            </tr>
          </thead>
          <tbody>
            {results.slice(1).map((r, i) => (
              <tr key={i}>
                <td>{r.name}</td>
                <td>{r.text || <span class="muted">(no words)</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}
