// The API's dataset shapes (functions/api/routers/datasets_schemas.py) as the console reads them.

export interface Dataset {
  id: string;
  name: string;
  description: string | null;
  format: string;
  visibility: string;
  project_id: number | null;
  status: "uploading" | "processing" | "ready" | "failed";
  error?: string | null;
  file_count: number;
  total_size_bytes: number;
  size_mb: number;
  num_classes: number;
  class_distribution: Record<string, number>;
  statistics: Record<string, any>;
  created_at: string;
  updated_at: string;
}

export interface DatasetList {
  datasets: Dataset[];
  total: number;
  skip: number;
  limit: number;
}

export interface Issue {
  severity: "error" | "warning" | string;
  message: string;
  details: Record<string, any>;
}

export interface ValidationReport {
  dataset_id: string;
  valid: boolean;
  issues: Issue[];
  recommendations: string[];
}

/** The formats a dataset may be declared as (shared/services/datasets.py DECLARED). */
export const FORMATS = ["auto", "imagefolder", "yolo", "coco", "ljspeech"] as const;

/** Still moving: its status will change by itself. */
export const inFlight = (d: Pick<Dataset, "status">) => d.status === "uploading" || d.status === "processing";
