// @ts-check
// Sky Classroom — what this pupil sees, told to the server (`qoe`, docs/protocol.md): every
// PERIOD_MS while joined, the period's frames shown per second, freezes and the longest, the share
// of the sound made up, the path (direct, relay, hls, recorded, or audio on still pictures) and the
// layer. The server keeps each pupil's latest report for a minute; the control room (/city) adds
// them up per class. Only pupils report: teachers and inspectors on this page send nothing.

/** @typedef {import("./protocol").ClientMessage} ClientMessage */
/** @typedef {Extract<ClientMessage, {type: "qoe"}>} QoeMessage */

export const PERIOD_MS = 15_000;
export const SAMPLE_MS = 250; // how often stats() is read: a freeze is a gap between new frames
const FREEZE_MS = 1000; // a gap this long between new frames is a freeze of our own count
const MIN_WATCHED_MS = 2000; // a period with less to watch than this is not told
const MAX_PERIOD_S = 120;

/**
 * What the page's stats() tells (learn.js), as far as the reports use it.
 * @typedef {object} PageStats
 * @property {boolean} [live] the teacher broadcasts
 * @property {string | null} [path] "direct", "relay", "hls", "recorded", or null
 * @property {string} [layer] "high", "low", "still"
 * @property {boolean} [dataSaver]
 * @property {number} [framesDecoded] of what plays now (the live video, or the recording)
 * @property {{count: number, seconds: number}} [freezes] the browser's own count, this subscription
 * @property {number} [audioConcealed] share of the sound made up
 * @property {boolean} [recordedPaused]
 * @property {number | null} [rttMs] round trip, when the page measures it
 * @property {number | null} [loss] share of packets lost, when the page measures it
 */

/**
 * @typedef {object} QoeSignaling
 * @property {string} state
 * @property {{role: string} | null} joined
 * @property {(msg: ClientMessage) => boolean} send
 */

/** @param {unknown} v @param {number} lo @param {number} hi */
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, typeof v === "number" && Number.isFinite(v) ? v : lo));

/** @param {unknown} v */
const measured = (v) => typeof v === "number" && Number.isFinite(v) && v >= 0;

/**
 * The path a report names: moving pictures straight, through TURN, over HLS, the recording, or
 * sound with still pictures (data saver, or a link on the still layer); null when nothing should play.
 * @param {PageStats} s
 * @returns {QoeMessage["path"] | null}
 */
export function pathOf(s) {
  if (s.path === "recorded") return s.recordedPaused ? null : "recorded";
  if (!s.live) return null; // no teacher and no recording: nothing to see
  if (s.dataSaver || s.layer === "still") return "audio";
  if (s.path === "hls" || s.path === "direct" || s.path === "relay") return s.path;
  return "direct"; // live, the path not known yet: WebRTC
}

/** What a period has seen so far. @param {number} now */
function period(now) {
  return {
    start: now,
    watchedMs: 0,
    frames: 0,
    gaps: 0, // freezes of our own count
    longestMs: 0,
    browserFreezes: 0,
    browserFreezeS: 0,
    path: /** @type {QoeMessage["path"] | null} */ (null),
    layer: /** @type {string | null} */ (null),
  };
}

export class QoeReporter {
  /**
   * Starts at once: reads `stats()` every SAMPLE_MS and reports every PERIOD_MS.
   * @param {QoeSignaling} signaling
   * @param {() => PageStats} stats
   */
  constructor(signaling, stats) {
    this.signaling = signaling;
    this.stats = stats;
    this.sent = 0; // reports sent, for the tests
    /** @type {QoeMessage | null} */
    this.last = null;
    const now = performance.now();
    this.period = period(now);
    this.lastFrameAt = now; // performance.now() of the last new frame seen
    /** @type {{at: number, path: string | null, frames: number, browser: {count: number, seconds: number}} | null} */
    this.prev = null;
    setInterval(() => this.sample(performance.now()), SAMPLE_MS);
    setInterval(() => this.report(performance.now()), PERIOD_MS);
  }

  /** @param {number} now */
  sample(now) {
    const s = this.stats();
    const path = pathOf(s);
    const frames = s.framesDecoded || 0;
    const browser = s.freezes || { count: 0, seconds: 0 };
    const prev = this.prev;
    this.prev = { at: now, path, frames, browser };
    if (!prev || path === null || path !== prev.path) {
      this.lastFrameAt = now; // nothing to watch, or another source: its counters start afresh
      return;
    }
    const p = this.period;
    p.path = path;
    p.layer = s.layer || null;
    p.watchedMs += now - prev.at;
    if (path === "audio") {
      this.lastFrameAt = now; // still pictures: a picture every few seconds is what is asked for
      return;
    }
    const added = frames - prev.frames;
    const since = Math.max(this.lastFrameAt, p.start);
    // New frames: the gap ended after the previous sample (its length at least until then); none:
    // it goes on at least until now. So a throttled timer (a hidden tab) is never a freeze itself.
    const gap = added > 0 ? prev.at - since : now - since;
    p.longestMs = Math.max(p.longestMs, gap);
    if (added > 0) {
      p.frames += added;
      if (gap >= FREEZE_MS) p.gaps += 1;
      this.lastFrameAt = now;
    }
    if (browser.count >= prev.browser.count) {
      // the browser's count, which sees shorter freezes (a new subscription starts it from zero)
      p.browserFreezes += browser.count - prev.browser.count;
      p.browserFreezeS += Math.max(0, browser.seconds - prev.browser.seconds);
    }
  }

  /** Send the period's report (while joined as a pupil, with something to watch). @param {number} now */
  report(now) {
    const p = this.period;
    this.period = period(now);
    const path = p.path;
    const watchedS = p.watchedMs / 1000;
    const periodS = clamp((now - p.start) / 1000, 1, MAX_PERIOD_S);
    // The browser's freezes: one is exact, several give their average length.
    const browserLongest = p.browserFreezes > 0 ? p.browserFreezeS / p.browserFreezes : 0;
    const longest = path === "audio" ? 0 : Math.max(p.longestMs / 1000, browserLongest);
    const s = this.stats();
    const joined = this.signaling.state === "joined" && this.signaling.joined?.role === "student";
    if (joined && path !== null && p.watchedMs >= MIN_WATCHED_MS) {
      /** @type {QoeMessage} */
      const msg = {
        type: "qoe",
        fps: clamp(p.frames / watchedS, 0, 120),
        freezes: path === "audio" ? 0 : Math.min(1000, Math.max(p.gaps, p.browserFreezes)),
        longest_freeze_s: clamp(longest, 0, periodS),
        concealed: clamp(s.audioConcealed, 0, 1),
        path,
        period_s: periodS,
      };
      if (p.layer === "high" || p.layer === "low" || p.layer === "still") msg.layer = p.layer;
      if (measured(s.rttMs)) msg.rtt_ms = clamp(s.rttMs, 0, 60_000);
      if (measured(s.loss)) msg.loss = clamp(s.loss, 0, 1);
      if (this.signaling.send(msg)) {
        this.sent += 1;
        this.last = msg;
      }
    }
  }
}
