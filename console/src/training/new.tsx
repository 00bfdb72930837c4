// #/training/new: a new training job, the form generated from the API's own description of
// what each framework takes (GET /training/config-schema: its knobs with their defaults,
// ranges and choices, and seed 002's presets), the models from the catalogue
// (GET /models/list), the dataset from the caller's ready datasets. The API is the judge:
// the form sends what was typed (no browser-side range checks) and shows each refusal
// beside the field it names. Created, then started, then off to the job's page.
import { useEffect, useMemo, useState } from "preact/hooks";
import { API, ApiError, get, post } from "../api";
import type { Dataset, DatasetList } from "../datasets/types";
import { go, type Route } from "../router";
import { Card, ErrorBox, fmtNum } from "../ui";
import { FRAMEWORKS, type TrainingJob } from "./list";

interface SchemaField {
  name: string; // dotted: optimizer.type, image_size
  label: string;
  description?: string;
  default: any;
  type: "select" | "number" | "boolean" | "array" | "string";
  options?: { value: string; label: string; description?: string }[];
  min?: number;
  max?: number;
  step?: number;
}

interface Preset {
  epochs: number;
  batch_size: number;
  learning_rate: number;
  advanced_config: Record<string, any>;
}

interface ConfigSchema {
  framework: string;
  task_type: string;
  schema: { fields: SchemaField[] };
  knobs?: { aliases?: Record<string, string> };
  presets: Record<string, Preset>;
}

interface CatalogueModel {
  model_name: string;
  framework: string;
  task_types: string[];
  parameters?: string;
  description?: string;
  default_image_size?: number | null;
}

/** The console's own preset (the API's are for real runs): a run that ends in a minute or
 * two on a CPU, to see that a dataset and model train at all. Knobs the framework does not
 * take are left out. */
const QUICK: Preset = {
  epochs: 2,
  batch_size: 8,
  learning_rate: 0.003,
  advanced_config: { image_size: 32, warmup_epochs: 0, mosaic: 0, nbs: 4, dim: 64, layers: 1 },
};
const QUICK_IMAGE_SIZE: Record<string, number> = { ultralytics: 64 };

const BASIC = [
  { name: "epochs", label: "Epochs", min: 1, max: 1000, step: 1 },
  { name: "batch_size", label: "Batch size", min: 1, max: 4096, step: 1 },
  { name: "learning_rate", label: "Learning rate", min: 0, max: 1, step: "any" as const },
];

const models = new Map<string, Promise<CatalogueModel[]>>();
function modelsOf(framework: string): Promise<CatalogueModel[]> {
  let p = models.get(framework);
  if (!p) {
    p = get<{ models: CatalogueModel[] }>(`${API}/models/list?framework=${encodeURIComponent(framework)}`).then((r) => r.models);
    p.catch(() => models.delete(framework));
    models.set(framework, p);
  }
  return p;
}

type Values = Record<string, string | boolean>;

/** A field's value as the form holds it (text for inputs, a flag for checkboxes). */
function shown(f: SchemaField, v: any): string | boolean {
  if (f.type === "boolean") return !!v;
  if (v == null) return "";
  return Array.isArray(v) ? v.join(", ") : String(v);
}

/** The value to send for a field's text ("" is not sent: the trainer's default holds). */
function parsed(f: SchemaField, v: string | boolean): any {
  if (f.type === "boolean") return !!v;
  const s = String(v).trim();
  if (f.type === "number") return s === "" ? undefined : Number.isFinite(Number(s)) ? Number(s) : s;
  if (f.type === "array") return s === "" ? undefined : s.split(/[,\s]+/).filter(Boolean).map((x) => (Number.isFinite(Number(x)) ? Number(x) : x));
  return s === "" ? undefined : s;
}

/** {"optimizer": {"type": "sgd"}} -> {"optimizer.type": "sgd"} */
function flatten(obj: Record<string, any>, prefix = ""): Record<string, any> {
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flatten(v, `${prefix}${k}.`));
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

function setPath(obj: Record<string, any>, dotted: string, value: any): void {
  const parts = dotted.split(".");
  let at = obj;
  for (const p of parts.slice(0, -1)) at = at[p] ??= {};
  at[parts[parts.length - 1]] = value;
}

export function NewJob({ route }: { route: Route }) {
  const [framework, setFramework] = useState<string>(route.query.get("framework") ?? "timm");
  const [task, setTask] = useState<string>("");
  const [catalogue, setCatalogue] = useState<CatalogueModel[] | null>(null);
  const [schema, setSchema] = useState<ConfigSchema | null>(null);
  const [datasets, setDatasets] = useState<Dataset[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);

  const [model, setModel] = useState("");
  const [datasetId, setDatasetId] = useState(route.query.get("dataset") ?? "");
  const [name, setName] = useState("");
  const [tags, setTags] = useState("");
  const [notes, setNotes] = useState("");
  const [basic, setBasic] = useState<Record<string, string>>({ epochs: "10", batch_size: "16", learning_rate: "0.001" });
  const [adv, setAdv] = useState<Values>({});
  // a preset's settings that are no field of the form (sent as the preset gives them)
  const [extra, setExtra] = useState<Record<string, any>>({});
  const [preset, setPreset] = useState("");
  const [showAdvanced, setShowAdvanced] = useState(false);

  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<unknown>(null);
  const [busy, setBusy] = useState<"" | "creating" | "starting">("");
  const [created, setCreated] = useState<TrainingJob | null>(null);

  useEffect(() => {
    get<DatasetList>(`${API}/datasets?limit=1000`).then(
      (l) => setDatasets(l.datasets.filter((d) => d.status === "ready")),
      setLoadError,
    );
  }, []);
  useEffect(() => {
    setCatalogue(null);
    modelsOf(framework).then(setCatalogue, setLoadError);
  }, [framework]);
  const tasks = useMemo(() => [...new Set((catalogue ?? []).flatMap((m) => m.task_types))], [catalogue]);
  const taskNow = tasks.includes(task) ? task : tasks[0] ?? "";
  const choices = useMemo(() => (catalogue ?? []).filter((m) => m.task_types.includes(taskNow)), [catalogue, taskNow]);
  useEffect(() => {
    if (!taskNow) return;
    setSchema(null);
    get<ConfigSchema>(`${API}/training/config-schema?framework=${encodeURIComponent(framework)}&task_type=${encodeURIComponent(taskNow)}`).then(
      (s) => {
        setSchema(s);
        setAdv(Object.fromEntries(s.schema.fields.map((f) => [f.name, shown(f, f.default)])));
        setExtra({});
        setPreset("");
      },
      setLoadError,
    );
  }, [framework, taskNow]);
  useEffect(() => {
    if (choices.length && !choices.some((m) => m.model_name === model)) setModel(choices[0].model_name);
  }, [choices]);

  const fields = schema?.schema.fields ?? [];
  const presets: [string, Preset][] = schema ? [["quick test", QUICK], ...Object.entries(schema.presets)] : [];

  const applyPreset = (key: string) => {
    setPreset(key);
    const p = presets.find(([k]) => k === key)?.[1];
    if (!p || !schema) return;
    setBasic({ epochs: String(p.epochs), batch_size: String(p.batch_size), learning_rate: String(p.learning_rate) });
    const values: Values = Object.fromEntries(fields.map((f) => [f.name, shown(f, f.default)]));
    const given = flatten(p.advanced_config);
    if (key === "quick test" && QUICK_IMAGE_SIZE[framework]) given.image_size = QUICK_IMAGE_SIZE[framework];
    const aliases = schema.knobs?.aliases ?? {};
    const rest: Record<string, any> = {};
    for (const [name, v] of Object.entries(given)) {
      const f = fields.find((x) => x.name === name) ?? fields.find((x) => x.name === aliases[name]);
      if (f) values[f.name] = shown(f, v);
      else if (key !== "quick test") rest[name] = v; // the console's own preset: only what the form has
    }
    setAdv(values);
    setExtra(rest);
    setErrors({});
  };

  /** What differs from the schema's defaults (only that is sent: the rest is the trainer's). */
  const advancedConfig = () => {
    const out: Record<string, any> = {};
    for (const [name, v] of Object.entries(extra)) setPath(out, name, v);
    for (const f of fields) {
      const v = parsed(f, adv[f.name] ?? shown(f, f.default));
      const d = f.default;
      if (v === undefined || JSON.stringify(v) === JSON.stringify(d)) continue;
      setPath(out, f.name, v);
    }
    return out;
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setErrors({});
    setFormError(null);
    setBusy("creating");
    const num = (s: string) => (s.trim() === "" ? null : Number.isFinite(Number(s)) ? Number(s) : s);
    let job: TrainingJob | null = created;
    try {
      if (!job) {
        job = await post<TrainingJob>(`${API}/training/jobs`, {
          experiment_name: name.trim() || undefined,
          tags: tags.split(",").map((t) => t.trim()).filter(Boolean),
          notes: notes.trim() || undefined,
          config: {
            framework,
            task_type: taskNow,
            model_name: model.trim(),
            dataset_id: datasetId,
            epochs: num(basic.epochs),
            batch_size: num(basic.batch_size),
            learning_rate: num(basic.learning_rate),
            advanced_config: advancedConfig(),
          },
        });
        setCreated(job);
      }
      setBusy("starting");
      await post(`${API}/training/jobs/${job.id}/start`);
      go(`/training/${job.id}`);
    } catch (err) {
      const field = err instanceof ApiError ? err.field : undefined;
      const key = field?.replace(/^config\.(advanced_config\.)?/, "");
      if (!job && key && (key in basic || ["model_name", "dataset_id", "experiment_name", "tags", "notes", "task_type", "framework"].includes(key) || fields.some((f) => f.name === key))) {
        const message = err instanceof Error ? err.message.replace(new RegExp(`^${field!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `), "") : String(err);
        setErrors({ [key]: message });
        if (fields.some((f) => f.name === key)) setShowAdvanced(true);
        setFormError(new Error("The API refused the job: see the field marked below."));
      } else setFormError(err);
    } finally {
      setBusy("");
    }
  };

  const chosen = choices.find((m) => m.model_name === model);
  const groups = groupFields(fields);
  const datasetChosen = datasets?.find((d) => d.id === datasetId);

  return (
    <div class="page">
      <p>
        <a href="#/training">← Training</a>
      </p>
      <h1>New training job</h1>
      <ErrorBox error={loadError} />
      <form onSubmit={submit} noValidate class="tr-form" data-testid="new-job">
        <Card title="What to train">
          <div class="tr-grid">
            <label>
              Framework
              <select name="framework" value={framework} disabled={!!created} onChange={(e) => setFramework(e.currentTarget.value)}>
                {FRAMEWORKS.map((f) => (
                  <option key={f} value={f}>
                    {f}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Task
              <select name="task_type" value={taskNow} disabled={!!created} onChange={(e) => setTask(e.currentTarget.value)}>
                {tasks.map((t) => (
                  <option key={t} value={t}>
                    {t.replace(/_/g, " ")}
                  </option>
                ))}
              </select>
              <FieldError errors={errors} name="task_type" />
            </label>
            <label>
              Model
              <input
                name="model_name"
                list="tr-models"
                value={model}
                disabled={!!created}
                placeholder={catalogue ? `${choices.length} models` : "loading models…"}
                onInput={(e) => setModel(e.currentTarget.value)}
                aria-invalid={!!errors.model_name}
              />
              <datalist id="tr-models">
                {choices.map((m) => (
                  <option key={m.model_name} value={m.model_name}>
                    {m.parameters ? `${m.parameters} · ` : ""}
                    {m.description ?? ""}
                  </option>
                ))}
              </datalist>
              <span class="dtl-hint">{chosen ? `${chosen.parameters ?? ""} ${chosen.description ?? ""}` : model ? "not in the catalogue" : ""}</span>
              <FieldError errors={errors} name="model_name" />
            </label>
            <label>
              Dataset
              <select name="dataset_id" value={datasetId} disabled={!!created} onChange={(e) => setDatasetId(e.currentTarget.value)} aria-invalid={!!errors.dataset_id}>
                <option value="">{datasets ? (datasets.length ? "choose one of yours" : "no ready datasets: upload one") : "loading…"}</option>
                {(datasets ?? []).map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name} ({d.format}, {d.num_classes} classes, {d.file_count} files)
                  </option>
                ))}
              </select>
              {datasetChosen && <span class="dtl-hint">{Object.keys(datasetChosen.class_distribution).slice(0, 8).join(", ")}</span>}
              <FieldError errors={errors} name="dataset_id" />
            </label>
          </div>
        </Card>
        <Card title="How">
          <div class="toolbar tr-presets" role="group" aria-label="presets">
            <span class="muted">Preset:</span>
            {presets.map(([key, p]) => (
              <button type="button" key={key} class={preset === key ? "on" : ""} data-testid={`preset-${key}`} disabled={!!created} onClick={() => applyPreset(key)} title={`${p.epochs} epochs, batch ${p.batch_size}, learning rate ${p.learning_rate}`}>
                {key}
              </button>
            ))}
          </div>
          <p class="muted tr-note">
            basic, standard and aggressive are the API's presets for real runs; quick test is the console's: a couple of small epochs to see that it trains.
          </p>
          <div class="tr-grid">
            {BASIC.map((b) => (
              <label key={b.name}>
                {b.label}
                <input
                  name={b.name}
                  type="number"
                  step={b.step}
                  value={basic[b.name]}
                  disabled={!!created}
                  aria-invalid={!!errors[b.name]}
                  onInput={(e) => setBasic({ ...basic, [b.name]: e.currentTarget.value })}
                />
                <span class="dtl-hint">
                  {b.name === "learning_rate" ? "above 0, at most 1" : `${fmtBound(b.min)} to ${fmtBound(b.max)}`}
                </span>
                <FieldError errors={errors} name={b.name} />
              </label>
            ))}
          </div>
          <button type="button" class="dtl-linkbtn" onClick={() => setShowAdvanced(!showAdvanced)} aria-expanded={showAdvanced}>
            {showAdvanced ? "▾" : "▸"} Advanced settings ({fields.length})
          </button>
          {Object.keys(extra).length > 0 && (
            <p class="dtl-hint">
              The preset also sets: {Object.entries(extra).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ")}
            </p>
          )}
          {showAdvanced && (
            <div class="tr-advanced" data-testid="advanced">
              {groups.map(([group, fs]) => (
                <fieldset key={group}>
                  <legend>{group}</legend>
                  <div class="tr-grid">
                    {fs.map((f) => (
                      <Knob key={f.name} field={f} value={adv[f.name] ?? shown(f, f.default)} disabled={!!created} error={errors[f.name]} onChange={(v) => setAdv({ ...adv, [f.name]: v })} />
                    ))}
                  </div>
                </fieldset>
              ))}
            </div>
          )}
        </Card>
        <Card title="About this run">
          <div class="tr-grid">
            <label>
              Name
              <input name="experiment_name" value={name} disabled={!!created} placeholder="optional" onInput={(e) => setName(e.currentTarget.value)} />
              <FieldError errors={errors} name="experiment_name" />
            </label>
            <label>
              Tags
              <input name="tags" value={tags} disabled={!!created} placeholder="comma, separated" onInput={(e) => setTags(e.currentTarget.value)} />
              <FieldError errors={errors} name="tags" />
            </label>
          </div>
          <label>
            Notes
            <textarea name="notes" rows={2} value={notes} disabled={!!created} onInput={(e) => setNotes(e.currentTarget.value)} />
            <FieldError errors={errors} name="notes" />
          </label>
        </Card>
        <ErrorBox error={formError} />
        {created && (
          <p class="notice">
            Job <a href={`#/training/${created.id}`}>#{created.id}</a> was created but not started. Start it again here, or from its page.
          </p>
        )}
        <div class="toolbar">
          <button type="submit" class="primary" disabled={!!busy || !schema} data-testid="create-job">
            {busy === "creating" ? "Creating…" : busy === "starting" ? "Starting…" : created ? "Start it" : "Create and start"}
          </button>
        </div>
      </form>
    </div>
  );
}

function FieldError({ errors, name }: { errors: Record<string, string>; name: string }) {
  const msg = errors[name];
  return msg ? (
    <span class="dtl-field-error" role="alert" data-testid={`error-${name}`}>
      {msg}
    </span>
  ) : null;
}

function Knob({ field: f, value, error, disabled, onChange }: { field: SchemaField; value: string | boolean; error?: string; disabled: boolean; onChange: (v: string | boolean) => void }) {
  const range = f.type === "number" && (f.min != null || f.max != null) ? `${f.min != null ? fmtBound(f.min) : "…"} to ${f.max != null ? fmtBound(f.max) : "…"}` : "";
  const hint = [f.description, range].filter(Boolean).join(" · ");
  if (f.type === "boolean") {
    return (
      <label class="tr-check" title={f.description}>
        <span>
          <input type="checkbox" name={f.name} checked={!!value} disabled={disabled} onChange={(e) => onChange(e.currentTarget.checked)} /> {f.label}
        </span>
        <span class="dtl-hint">{f.description}</span>
        {error && <span class="dtl-field-error" role="alert" data-testid={`error-${f.name}`}>{error}</span>}
      </label>
    );
  }
  return (
    <label>
      {f.label}
      {f.type === "select" ? (
        <select name={f.name} value={String(value)} disabled={disabled} onChange={(e) => onChange(e.currentTarget.value)}>
          {(f.options ?? []).map((o) => (
            <option key={o.value} value={o.value} title={o.description}>
              {o.label}
            </option>
          ))}
        </select>
      ) : f.type === "number" ? (
        <input
          name={f.name}
          type="number"
          step={f.step ?? "any"}
          value={String(value)}
          placeholder={f.default == null ? "default" : undefined}
          disabled={disabled}
          aria-invalid={!!error}
          onInput={(e) => onChange(e.currentTarget.value)}
        />
      ) : (
        <input
          name={f.name}
          type="text"
          value={String(value)}
          placeholder={f.default == null ? "default" : f.type === "array" ? "comma, separated" : undefined}
          disabled={disabled}
          aria-invalid={!!error}
          onInput={(e) => onChange(e.currentTarget.value)}
        />
      )}
      {hint && <span class="dtl-hint">{hint}</span>}
      {error && <span class="dtl-field-error" role="alert" data-testid={`error-${f.name}`}>{error}</span>}
    </label>
  );
}

/** A range's end as people read it: 1,000 and 2,147,483,647, 0.5, 1e-8. */
function fmtBound(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString("en") : Math.abs(n) < 1e-3 ? n.toExponential(0) : fmtNum(n);
}

/** Fields by their first name part (optimizer, scheduler, augmentation), the rest together. */
function groupFields(fields: SchemaField[]): [string, SchemaField[]][] {
  const groups = new Map<string, SchemaField[]>();
  for (const f of fields) {
    const g = f.name.includes(".") ? f.name.split(".")[0] : "general";
    groups.set(g, [...(groups.get(g) ?? []), f]);
  }
  return [...groups.entries()];
}
