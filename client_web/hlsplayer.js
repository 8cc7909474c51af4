// @ts-check
// Plays a live HLS playlist in a <video> (the server sends big rooms' viewers to its HLS tier):
// Chromium through hls.js (Media Source Extensions), loaded only when a page first needs it;
// browsers that play HLS natively (Safari) without it.

/** @typedef {import("./globals").HlsConstructor} HlsConstructor */
/** @typedef {import("./globals").HlsInstance} HlsInstance */

const HLS_JS = "/static/vendor/hls.light.min.js"; // hls.js 1.7.4, Apache-2.0 (vendor/hls.js.LICENSE)

const RETRY_MS = 1000;

/** @type {Promise<HlsConstructor> | null} */
let loading = null;

/** @returns {Promise<HlsConstructor>} */
function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = HLS_JS;
      script.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error("hls.js did not load")));
      script.onerror = () => reject(new Error("hls.js could not be loaded"));
      document.head.append(script);
    });
  }
  return loading;
}

export class HlsPlayer {
  /** @param {HTMLVideoElement} video */
  constructor(video) {
    this.video = video;
    /** @type {string | null} */
    this.url = null;
    /** @type {HlsInstance | null} */
    this.hls = null;
    this.errors = 0;
    this.bytes = 0; // segments' bytes loaded by every stream played: the data the page used
  }

  /**
   * Play `url` (again, after a stop); a missing playlist (the teacher just started) is retried.
   * @param {string} url
   */
  async play(url) {
    if (this.url === url) return;
    this.stop();
    this.url = url;
    const video = this.video;
    video.srcObject = null;
    if (video.canPlayType("application/vnd.apple.mpegurl") && !window.MediaSource) {
      video.src = url;
      return;
    }
    const Hls = await loadHlsJs();
    if (this.url !== url) return; // stopped meanwhile
    // Near the live edge: two segments behind it, and catch up rather than drift.
    const hls = new Hls({ liveSyncDurationCount: 2, liveMaxLatencyDurationCount: 5 });
    this.hls = hls;
    /** @param {string} _event @param {import("./globals").HlsFragLoadedData} data */
    const loaded = (_event, data) => {
      this.bytes += data.frag.stats.loaded || 0;
    };
    hls.on(Hls.Events.FRAG_LOADED, loaded);
    hls.on(Hls.Events.ERROR, (_event, data) => {
      this.errors += 1;
      if (!data.fatal || this.hls !== hls) return;
      console.warn("skyclass: HLS", data.type, data.details);
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        // No playlist yet (the teacher has just started) or the network failed: start over shortly.
        setTimeout(() => {
          if (this.hls !== hls) return;
          this.stop();
          this.play(url);
        }, RETRY_MS);
      }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  stop() {
    this.url = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
  }

  /** Seconds behind the live edge the player is (null until it knows). */
  latency() {
    const latency = this.hls ? this.hls.latency : null;
    return typeof latency === "number" && Number.isFinite(latency) ? latency : null;
  }

  /** Pictures shown so far. */
  frames() {
    const q = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    return q ? q.totalVideoFrames : 0;
  }
}
