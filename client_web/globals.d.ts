// Globals the pages meet: hls.js (client_web/vendor/hls.light.min.js, loaded by hlsplayer.js only
// when a page needs it, as a classic script that sets window.Hls), and what the pages expose for
// the tests (window.skyclass). Types only: nothing here runs in the browser.

/** The part of hls.js 1.x that hlsplayer.js uses. */
export interface HlsErrorData {
  type: string;
  details: string;
  fatal: boolean;
}

/** FRAG_LOADED's data: a segment's transfer. */
export interface HlsFragLoadedData {
  frag: { stats: { loaded: number } };
}

export interface HlsInstance {
  readonly latency: number;
  on(event: string, listener: (event: string, data: HlsErrorData) => void): void;
  on(event: string, listener: (event: string, data: HlsFragLoadedData) => void): void;
  loadSource(url: string): void;
  attachMedia(media: HTMLMediaElement): void;
  recoverMediaError(): void;
  destroy(): void;
}

export interface HlsConstructor {
  new (config?: { liveSyncDurationCount?: number; liveMaxLatencyDurationCount?: number }): HlsInstance;
  readonly Events: { readonly ERROR: string; readonly FRAG_LOADED: string };
  readonly ErrorTypes: { readonly MEDIA_ERROR: string; readonly NETWORK_ERROR: string };
  isSupported(): boolean;
}

/** The part of tus-js-client 4.x (vendor/tus.min.js, a classic script that sets window.tus) the library page uses. */
export interface TusUploadOptions {
  endpoint: string;
  headers?: Record<string, string>;
  metadata?: Record<string, string>;
  chunkSize?: number;
  retryDelays?: number[];
  removeFingerprintOnSuccess?: boolean;
  onProgress?: (sent: number, total: number) => void;
  onError?: (error: Error) => void;
  onSuccess?: () => void;
}

export interface TusUpload {
  readonly url: string | null;
  start(): void;
  abort(): Promise<void>;
}

/** The part of uPlot 1.6 (vendor/uPlot.iife.min.js, a classic script that sets window.uPlot) the control room uses. */
export interface UPlotInstance {
  setData(data: (number | null)[][]): void;
  destroy(): void;
}

export interface UPlotConstructor {
  new (options: object, data: (number | null)[][], target: HTMLElement): UPlotInstance;
  readonly paths: { bars(options?: { size?: [number, number] }): unknown };
}

declare global {
  interface Window {
    /** tus-js-client, once its script has run. */
    tus?: { Upload: new (file: File, options: TusUploadOptions) => TusUpload };
    /** uPlot, once its script has run. */
    uPlot?: UPlotConstructor;
    /** hls.js, once its script has run. */
    Hls?: HlsConstructor;
    /** What a page shows the tests: `stats()` and, on the classroom pages, `dropConnection()`. */
    skyclass?: Readonly<Record<string, unknown>>;
  }
}
