// One recording: what it is, its analysis arriving live (progress from ``file:<id>``),
// then the editor, the episodes, per-episode statistics with cryCE/unvoicedCE, tags,
// and CSV/JSON export.
import { useEffect, useRef, useState } from "preact/hooks";
import { API, ApiError, del, get, messageOf, post, token } from "../api";
import { go } from "../router";
import { Card, ErrorBox, Progress, Status, fmtBytes, fmtTime } from "../ui";
import { Editor } from "./editor";
import { fmtDuration } from "./list";
import { newsOf, useFollow } from "./live";
import type { View } from "./plot";
import { type AnalysisResult, type AudioFile, type Feature, FEATURES, type Spectrogram, type Tag, type Waveform } from "./types";

const FEATURE_LABEL: Record<Feature, [string, string, number]> = {
  f0: ["F0", "Hz", 1],
  f1: ["F1", "Hz", 1],
  f2: ["F2", "Hz", 1],
  f3: ["F3", "Hz", 1],
  hnr: ["HNR", "dB", 2],
  jitter: ["Jitter (local)", "ratio", 5],
  shimmer: ["Shimmer (local)", "ratio", 5],
  intensity: ["Intensity", "dB", 1],
};
const fix = (v: number | null | undefined, d: number) => (v == null ? "—" : v.toFixed(d));

/** Fetch ``path`` with the token and offer it as a download, named as the API names it. */
async function downloadFrom(path: string, fallback: string): Promise<void> {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token() ?? ""}` } });
  if (!res.ok) throw messageOf(await res.json().catch(() => ({})), res.status);
  const cd = res.headers.get("Content-Disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(cd)?.[1] ?? fallback;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await res.blob());
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

interface Loaded {
  result: AnalysisResult;
  wf: Waveform;
  sp: Spectrogram;
}

export function RecordingView({ id }: { id: number }) {
  const [file, setFile] = useState<AudioFile | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<{ task: string | null; progress: number; message: string } | null>(null);
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [view, setView] = useState<View | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [episode, setEpisode] = useState(0);
  const loadedFor = useRef<string | null>(null);

  // Only the latest read of the record counts: on a busy machine an earlier GET can
  // answer after the news that made a later one necessary.
  const gen = useRef(0);
  const reloadFile = async () => {
    const mine = ++gen.current;
    try {
      const f = await get<AudioFile>(`${API}/audio-files/${id}`);
      if (mine !== gen.current) return;
      setFile(f);
      setError(null);
      if (f.status === "processing") setLive((l) => l ?? { task: null, progress: f.progress, message: "" });
      else setLive(null);
    } catch (e) {
      if (mine === gen.current) setError(e);
    }
  };
  useEffect(() => {
    setFile(null);
    setLoaded(null);
    setView(null);
    loadedFor.current = null;
    reloadFile();
  }, [id]);

  // the result of the latest completed analysis (again when a newer one completes)
  useEffect(() => {
    if (!file || file.status !== "completed" || !file.analyzed_at) return;
    if (loadedFor.current === file.analyzed_at) return;
    loadedFor.current = file.analyzed_at;
    setLoadError(null);
    Promise.all([
      get<AnalysisResult>(`${API}/analysis/${id}/result`),
      get<Waveform>(`${API}/visualization/${id}/waveform?points=2000`),
      get<Spectrogram>(`${API}/visualization/${id}/spectrogram`),
    ]).then(
      ([result, wf, sp]) => {
        setLoaded({ result, wf, sp });
        setView((v) => v ?? { start: 0, end: file.duration || wf.duration });
        setEpisode(0);
      },
      (e) => {
        loadedFor.current = null;
        setLoadError(e);
      },
    );
  }, [file?.status, file?.analyzed_at]);

  const following = useFollow(
    `file:${id}`,
    (e) => {
      const n = newsOf(e);
      if (!n || n.fileId !== id) return;
      if (n.kind === "progress" && n.status === "processing") {
        // a run's progress only moves forward (a late duplicate does not take it back)
        setLive((l) => (l && l.task === n.task && n.progress < l.progress ? l : { task: n.task, progress: n.progress, message: n.message }));
        setFile((f) => (f && f.status !== "processing" ? { ...f, status: "processing", progress: n.progress } : f));
      } else {
        // completed or failed: said at once; the record (when, why) follows
        setFile((f) => (f ? { ...f, status: n.status, progress: n.progress } : f));
        setLive(null);
        reloadFile();
      }
    },
    reloadFile, // (re)connected: catch up on anything missed
  );

  const act = async (fn: () => Promise<unknown>) => {
    setActionError(null);
    try {
      await fn();
    } catch (e) {
      setActionError(e);
    }
  };

  if (error) {
    return (
      <div class="page">
        <p>
          <a href="#/recordings">← Recordings</a>
        </p>
        <ErrorBox error={error} />
      </div>
    );
  }
  if (!file) return <p class="muted">Loading…</p>;
  const r = loaded?.result.result_data;
  const epName = `episode_${episode}`;
  const stats = r?.statistics[epName];
  const units = r?.cry_units[epName];

  return (
    <div class="page">
      <p class="rec-crumbs">
        <a href="#/recordings">← Recordings</a>
      </p>
      <div class="rec-title">
        <h1 data-testid="recording-name">{file.original_filename}</h1>
        <span data-testid="recording-status">
          <Status value={file.status} />
        </span>
        <span class="spacer" />
        <span class={`rec-live ${following ? "on" : ""}`}>{following ? "live" : "offline"}</span>
        <button
          disabled={file.status === "processing" || !file.sample_rate}
          onClick={() =>
            act(async () => {
              const run = await post(`${API}/analysis/${id}/start`);
              // (its first news may have come before this answer)
              setLive((l) => (l && l.task === run.task_id ? l : { task: run.task_id, progress: 0, message: "Queued" }));
              await reloadFile();
            })
          }
        >
          Analyse again
        </button>
        <button disabled={!file.analyzed_at} onClick={() => act(() => downloadFrom(`${API}/export/${id}/csv`, `analysis_results_${id}.csv`))}>
          Export CSV
        </button>
        <button disabled={!file.analyzed_at} onClick={() => act(() => downloadFrom(`${API}/export/${id}/json`, `analysis_results_${id}.json`))}>
          Export JSON
        </button>
        <button
          class="danger"
          onClick={() =>
            confirm(`Delete ${file.original_filename} and every analysis of it?`) &&
            act(async () => {
              await del(`${API}/audio-files/${id}`);
              go("/recordings");
            })
          }
        >
          Delete
        </button>
      </div>
      <ErrorBox error={actionError} />
      <div class="grid2">
        <Card title="Recording">
          <dl class="kv">
            <dt>Duration</dt>
            <dd>{fmtDuration(file.duration)}</dd>
            <dt>Format</dt>
            <dd>
              {file.format} · {file.sample_rate} Hz · {file.channels} channel{file.channels === 1 ? "" : "s"} · {fmtBytes(file.file_size)}
            </dd>
            <dt>Recorded</dt>
            <dd>{fmtTime(file.recording_start_time)}</dd>
            <dt>Uploaded</dt>
            <dd>{fmtTime(file.uploaded_at)}</dd>
            <dt>Analysed</dt>
            <dd>{fmtTime(file.analyzed_at)}</dd>
            <dt>Tags</dt>
            <dd>
              <TagEditor file={file} onChange={(tags) => setFile({ ...file, tags })} />
            </dd>
          </dl>
        </Card>
        <Card title="Analysis">
          {file.status === "processing" || file.status === "uploaded" ? (
            <div data-testid="analysis-progress">
              <Progress value={(live?.progress ?? file.progress) / 100} label="analysis" />
              <p class="muted">{live?.message || (file.status === "uploaded" ? "Waiting to be analysed" : "Analysing")}</p>
            </div>
          ) : file.status === "failed" ? (
            <ErrorBox error={file.error ?? "The analysis failed"} />
          ) : r ? (
            <dl class="kv" data-testid="analysis-summary">
              <dt>Cry episodes</dt>
              <dd data-testid="episode-count">{r.cry_episodes.length}</dd>
              <dt>Cry time</dt>
              <dd>{fmtDuration(r.cry_episodes.reduce((a, e) => a + e.duration, 0))}</dd>
              <dt>Cry units</dt>
              <dd>{Object.values(r.cry_units).reduce((a, u) => a + u.unit_count, 0)}</dd>
              <dt>Analysed at</dt>
              <dd>
                {String(r.quality?.analysed_sample_rate ?? "—")} Hz{r.quality?.clipped_fraction ? ` · ${(r.quality.clipped_fraction * 100).toFixed(2)}% clipped` : ""}
              </dd>
            </dl>
          ) : (
            <ErrorBox error={loadError} />
          )}
          {file.status !== "completed" && file.analyzed_at && <p class="muted">Showing the previous analysis until this one completes.</p>}
        </Card>
      </div>
      {loaded && view && (
        <Card title="Waveform and spectrogram">
          <Editor fileId={id} duration={file.duration} result={loaded.result} wf={loaded.wf} sp={loaded.sp} view={view} setView={setView} />
        </Card>
      )}
      {r && (
        <Card title="Cry episodes">
          {r.cry_episodes.length === 0 ? (
            <p class="muted">No cry episode was found in this recording.</p>
          ) : (
            <table data-testid="episodes">
              <thead>
                <tr>
                  <th>#</th>
                  <th class="num">Start (s)</th>
                  <th class="num">End (s)</th>
                  <th class="num">Duration (s)</th>
                  <th class="num">Voicing</th>
                  <th class="num">Units</th>
                  <th class="num">cryCE</th>
                  <th class="num">unvoicedCE</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {r.cry_episodes.map((ep, k) => {
                  const u = r.cry_units[`episode_${k}`];
                  return (
                    <tr key={k} class={`clickable${k === episode ? " rec-on" : ""}`} data-testid="episode-row" onClick={() => setEpisode(k)}>
                      <td>E{k + 1}</td>
                      <td class="num">{ep.start_time.toFixed(3)}</td>
                      <td class="num">{ep.end_time.toFixed(3)}</td>
                      <td class="num">{ep.duration.toFixed(3)}</td>
                      <td class="num">{fix(ep.confidence, 3)}</td>
                      <td class="num">{u?.unit_count ?? "—"}</td>
                      <td class="num">{fix(u?.cryCE, 3)}</td>
                      <td class="num">{fix(u?.unvoicedCE, 3)}</td>
                      <td>
                        <button
                          onClick={(e) => {
                            e.stopPropagation();
                            setEpisode(k);
                            const pad = Math.max(0.1, ep.duration * 0.1);
                            setView({ start: Math.max(0, ep.start_time - pad), end: Math.min(file.duration, ep.end_time + pad) });
                          }}
                        >
                          Zoom to
                        </button>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </Card>
      )}
      {r && stats && (
        <Card title={`Statistics of episode E${episode + 1}`}>
          <div class="tabs">
            {r.cry_episodes.map((_, k) => (
              <button key={k} class={k === episode ? "on" : ""} onClick={() => setEpisode(k)}>
                E{k + 1}
              </button>
            ))}
          </div>
          <div class="grid2">
            <table data-testid="stats" data-episode={episode}>
              <thead>
                <tr>
                  <th>Feature</th>
                  <th class="num">Mean</th>
                  <th class="num">SD</th>
                  <th class="num">Min</th>
                  <th class="num">Max</th>
                  <th class="num">Median</th>
                </tr>
              </thead>
              <tbody>
                {FEATURES.map((f) => {
                  const [label, unit, d] = FEATURE_LABEL[f];
                  const s = stats[f];
                  return (
                    <tr key={f}>
                      <td>
                        {label} <span class="muted">({unit})</span>
                      </td>
                      {(["mean", "std", "min", "max", "median"] as const).map((c) => (
                        <td key={c} class="num" data-testid={`stat-${f}-${c}`}>
                          {fix(s?.[c], d)}
                        </td>
                      ))}
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <div>
              <dl class="kv" data-testid="episode-summary">
                <dt>Duration</dt>
                <dd data-testid="stat-duration">{fix(stats.duration, 3)} s</dd>
                <dt>Frames</dt>
                <dd>{stats.num_frames}</dd>
                <dt>Voiced fraction</dt>
                <dd>{fix(stats.voiced_fraction, 3)}</dd>
                <dt>Jitter (local, episode)</dt>
                <dd>{fix(stats.jitter_local, 5)}</dd>
                <dt>Shimmer (local, episode)</dt>
                <dd>{fix(stats.shimmer_local, 5)}</dd>
                <dt>Cry units</dt>
                <dd>{units?.unit_count ?? "—"}</dd>
                <dt title="voiced cry-unit time / all cry-unit (expiratory) time in the episode">cryCE</dt>
                <dd data-testid="stat-cryCE">{fix(units?.cryCE, 3)}</dd>
                <dt title="1 - cryCE">unvoicedCE</dt>
                <dd data-testid="stat-unvoicedCE">{fix(units?.unvoicedCE, 3)}</dd>
              </dl>
              {units && units.units.length > 0 && (
                <table class="rec-units">
                  <thead>
                    <tr>
                      <th class="num">Start</th>
                      <th class="num">End</th>
                      <th class="num">Dur.</th>
                      <th>Voiced</th>
                      <th class="num">Peak (Hz)</th>
                    </tr>
                  </thead>
                  <tbody>
                    {units.units.map((u, j) => (
                      <tr key={j}>
                        <td class="num">{u.start_time.toFixed(3)}</td>
                        <td class="num">{u.end_time.toFixed(3)}</td>
                        <td class="num">{u.duration.toFixed(3)}</td>
                        <td>{u.is_voiced ? "yes" : "no"}</td>
                        <td class="num">{u.peak_frequency.toFixed(0)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </div>
          </div>
          <details class="rec-params">
            <summary>Analysis parameters</summary>
            <dl class="kv">
              {Object.entries(r.parameters).map(([k, v]) => [<dt key={`${k}-k`}>{k}</dt>, <dd key={`${k}-v`}>{String(v)}</dd>])}
            </dl>
          </details>
        </Card>
      )}
    </div>
  );
}

/** The file's tags as chips (× removes), and a picker of the user's tags (or a new one). */
function TagEditor({ file, onChange }: { file: AudioFile; onChange: (tags: Tag[]) => void }) {
  const [all, setAll] = useState<Tag[]>([]);
  const [name, setName] = useState("");
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    get(`${API}/tags/?limit=1000`).then((r) => setAll(r.tags), setError);
  }, []);
  const run = async (fn: () => Promise<Tag[]>) => {
    setError(null);
    try {
      onChange(await fn());
    } catch (e) {
      setError(e);
    }
  };
  const addNamed = () =>
    run(async () => {
      const wanted = name.trim();
      if (!wanted) throw new ApiError(400, "Type a tag name");
      let tag = all.find((t) => t.name === wanted);
      if (!tag) {
        tag = await post<Tag>(`${API}/tags/`, { name: wanted });
        setAll((xs) => [...xs, tag!]);
      }
      setName("");
      return post<Tag[]>(`${API}/tags/${file.id}/tags/${tag.id}`);
    });
  const have = new Set(file.tags.map((t) => t.id));
  return (
    <div class="rec-tags" data-testid="tags">
      {file.tags.map((t) => (
        <span key={t.id} class="chip">
          {t.name}{" "}
          <button class="rec-x" aria-label={`Remove tag ${t.name}`} onClick={() => run(() => del<Tag[]>(`${API}/tags/${file.id}/tags/${t.id}`))}>
            ×
          </button>
        </span>
      ))}
      <form
        class="rec-tag-form"
        onSubmit={(e) => {
          e.preventDefault();
          addNamed();
        }}
      >
        <input
          list="rec-tag-names"
          placeholder="add a tag"
          aria-label="Tag name"
          value={name}
          maxLength={100}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <datalist id="rec-tag-names">
          {all
            .filter((t) => !have.has(t.id))
            .map((t) => (
              <option key={t.id} value={t.name} />
            ))}
        </datalist>
        <button type="submit">Add</button>
      </form>
      <ErrorBox error={error} />
    </div>
  );
}
