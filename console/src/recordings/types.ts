// The shapes the recordings area reads (functions/api/routers/audio_schemas.py and
// shared/analysis.py's result_data, waveform and spectrogram documents).

export type AnalysisStatus = "uploaded" | "processing" | "completed" | "failed";

export interface Tag {
  id: number;
  name: string;
  created_at: string;
}

export interface AudioFile {
  id: number;
  user_id: number;
  original_filename: string;
  file_size: number;
  sample_rate: number;
  duration: number;
  channels: number;
  format: string;
  recording_start_time: string | null;
  status: AnalysisStatus;
  progress: number;
  error?: string | null;
  uploaded_at: string;
  analyzed_at?: string | null;
  tags: Tag[];
}

export interface FileList {
  total: number;
  files: AudioFile[];
}

export interface Episode {
  start_time: number;
  end_time: number;
  duration: number;
  confidence: number;
}

export const FEATURES = ["f0", "f1", "f2", "f3", "hnr", "jitter", "shimmer", "intensity"] as const;
export type Feature = (typeof FEATURES)[number];

export type Frame = { time: number } & Record<Feature, number | null>;

export interface Summary {
  mean: number | null;
  std: number | null;
  min: number | null;
  max: number | null;
  median: number | null;
}

export type EpisodeStats = Record<Feature, Summary> & {
  duration: number;
  num_frames: number;
  voiced_fraction: number;
  jitter_local: number | null;
  shimmer_local: number | null;
};

export interface CryUnit {
  start_time: number;
  end_time: number;
  duration: number;
  is_voiced: boolean;
  voiced_fraction: number;
  mean_energy: number;
  peak_frequency: number;
}

export interface EpisodeUnits {
  units: CryUnit[];
  unit_count: number;
  cryCE: number;
  unvoicedCE: number;
}

export interface ResultData {
  cry_episodes: Episode[];
  acoustic_features: Record<string, Frame[]>;
  statistics: Record<string, EpisodeStats>;
  cry_units: Record<string, EpisodeUnits>;
  parameters: Record<string, unknown>;
  quality?: Record<string, number>;
}

export interface AnalysisResult {
  id: number;
  audio_file_id: number;
  analyzed_at: string;
  result_data: ResultData;
}

/** ``GET visualization/{id}/waveform``: a min/max envelope in buckets centred at ``times``. */
export interface Waveform {
  times: number[];
  min: number[];
  max: number[];
  sample_rate: number;
  duration: number;
  points: number;
}

/** ``GET visualization/{id}/spectrogram``: dB re the loudest cell, ``[frequency][time]``. */
export interface Spectrogram {
  spectrogram: number[][];
  times: number[];
  frequencies: number[];
  sample_rate: number;
}
