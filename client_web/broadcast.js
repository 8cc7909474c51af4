// @ts-check
// Sky Classroom — the teacher's broadcast (the teacher page). Shows a muted camera preview;
// "Start broadcast" publishes microphone and camera (publish.js: the browser offers, the server
// answers), "Stop broadcast" unpublishes. While broadcasting, "Share screen" adds the screen as
// another video track: the page publishes again on a fresh peer connection (microphone, camera,
// screen, in that order), which the server takes in place of the first; "Stop sharing" (or the
// browser's own stop button) publishes microphone and camera again.

import { $, button, video, showError, clearError, shownError } from "./dom.js";
import { Publisher } from "./publish.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./publish.js").Outgoing} Outgoing */
/** @typedef {import("./protocol").Joined} Joined */
/** @typedef {import("./protocol").PublishAnswer} PublishAnswer */

const CAMERA = {
  video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
};

// The camera goes out twice: as it is, and as a small cheap layer that students on weak links get
// (the server chooses per student from their receiver reports).
const LOW_LAYER = { scaleResolutionDownBy: 2, maxBitrate: 150_000, maxFramerate: 15 };

/**
 * @typedef {object} BroadcastHooks
 * @property {() => void} render
 * @property {() => boolean} ended the session is over
 */

export class Broadcast {
  /**
   * @param {Signaling} signaling
   * @param {BroadcastHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    /** @type {MediaStream | null} camera + microphone */
    this.stream = null;
    /** @type {MediaStream | null} the shared screen (getDisplayMedia), from "Share screen" to "Stop sharing" */
    this.screen = null;
    this.live = false; // broadcasting now: joined.live, then true once the server answers our publish
    this.publisher = new Publisher(signaling, {
      tracks: () => (this.stream ? this.tracks(this.stream) : null),
      onChange: hooks.render,
      onFailed: (why) => {
        if (why === "offer") return this.refused();
        if (why === "connection") {
          showError({ code: "media_failed", message: "请再按一次“开始直播” Press Start broadcast again.", fatal: false });
        }
        this.stop();
      },
    });
    this.preview = video("preview");
    this.screenPreview = video("screen-preview");
    this.noCamera = $("no-camera");
    this.startBtn = button("start");
    this.stopBtn = button("stop");
    this.shareBtn = button("share");
    this.unshareBtn = button("unshare");
    this.liveBadge = $("live-badge");
    this.startBtn.addEventListener("click", () => this.start());
    this.stopBtn.addEventListener("click", () => this.stop());
    this.shareBtn.addEventListener("click", () => this.share());
    this.unshareBtn.addEventListener("click", () => this.unshare());
    $("retry-camera").addEventListener("click", () => this.openCamera());
  }

  /** Between Start and Stop. */
  get publishing() {
    return this.publisher.active;
  }

  /** The broadcast carries the shared screen (or is about to: a replacement under way). */
  sharing() {
    return !!(this.publishing && this.screen && this.publisher.sender("screen"));
  }

  /** @returns {"live" | "preview" | "none"} */
  source() {
    const p = this.publisher;
    if (this.publishing && p.media === "connected" && performance.now() - p.lastEncodedAt < 2000) return "live";
    if (this.stream && this.preview.videoWidth > 0) return "preview";
    return "none";
  }

  // --- camera ------------------------------------------------------------------------------

  async openCamera() {
    this.noCamera.hidden = true;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia(CAMERA);
    } catch (e) {
      console.warn("skyclass: getUserMedia", e);
      this.stream = null;
      this.noCamera.hidden = false;
      const err = /** @type {Error} */ (e);
      showError({ code: "no_camera", message: `${err.name}: ${err.message}`, fatal: false });
      this.hooks.render();
      return;
    }
    if (shownError() === "no_camera") clearError();
    if (this.hooks.ended()) {
      this.releaseCamera();
      return;
    }
    this.preview.srcObject = this.stream;
    this.preview.muted = true; // never echo the teacher's own voice
    this.preview.play().catch(() => {});
    this.hooks.render();
  }

  /** Turn the camera and microphone off (their light goes out) once the session is over. */
  releaseCamera() {
    if (!this.stream) return;
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.preview.srcObject = null;
  }

  // --- publishing ----------------------------------------------------------------------------

  /**
   * What the broadcast sends, in m-line order: microphone, camera, the camera's low layer, and the
   * screen when shared.
   * @param {MediaStream} stream
   * @returns {Outgoing[]}
   */
  tracks(stream) {
    /** @type {Outgoing[]} */
    const out = [];
    const mic = stream.getAudioTracks()[0];
    const camera = stream.getVideoTracks()[0];
    if (mic) out.push({ track: mic, stream, name: "audio" });
    if (camera) {
      out.push({ track: camera, stream, name: "video" });
      out.push({ track: camera, stream, name: "video_low", encoding: LOW_LAYER });
    }
    const screen = this.screen && this.screen.getVideoTracks()[0];
    if (this.screen && screen && screen.readyState === "live") out.push({ track: screen, stream: this.screen, name: "screen" });
    return out;
  }

  async start() {
    if (this.publishing || !this.stream) return;
    clearError();
    await this.publisher.start();
  }

  stop() {
    if (!this.publishing) return;
    this.signaling.send({ type: "unpublish" });
    this.teardown();
    this.releaseScreen();
  }

  teardown() {
    this.publisher.close();
    this.live = false;
    this.hooks.render();
  }

  /** The server refused our publish: a refused replacement leaves the broadcast as it was. */
  refused() {
    if (!this.publisher.restore()) {
      this.teardown();
      this.releaseScreen();
      return;
    }
    // The old publication is the one before the change: it may or may not carry the screen.
    const screenTrack = this.screen && this.screen.getVideoTracks()[0];
    const sender = this.publisher.sender("screen");
    if (!screenTrack || !sender || sender.track !== screenTrack) {
      this.publisher.drop("screen");
      this.releaseScreen();
    }
    this.hooks.render();
  }

  /** @param {PublishAnswer} msg */
  takeAnswer(msg) {
    if (this.publisher.takeAnswer(msg)) this.live = true; // the server accepted the broadcast
  }

  /**
   * Back after a dropped connection. The server kept our broadcast if its media connection stayed
   * up (joined.live); otherwise, or if the publish was under way when the connection dropped,
   * publish again. A "Stop" pressed while away is sent now.
   * @param {Joined} msg
   */
  rejoined(msg) {
    if (this.publishing && (this.publisher.awaiting || !msg.live)) {
      this.teardown(); // the screen, if shared, stays shared: start() publishes it again
      this.start();
    } else if (!this.publishing && msg.live) {
      this.signaling.send({ type: "unpublish" }); // does nothing unless the broadcast is ours
    }
  }

  // --- sharing the screen --------------------------------------------------------------------

  async share() {
    if (!this.publishing || this.screen) return;
    let display;
    try {
      display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      console.warn("skyclass: getDisplayMedia", e);
      // NotAllowedError: the teacher chose nothing (or the browser refused); say so plainly.
      const err = /** @type {Error} */ (e);
      showError({ code: "no_screen", message: `${err.name}: ${err.message}`, fatal: false });
      return;
    }
    this.shareStream(display);
  }

  /**
   * Share `display` (a MediaStream with a video track) as the screen.
   * @param {MediaStream} display
   */
  shareStream(display) {
    const track = display && display.getVideoTracks()[0];
    if (!track || !this.publishing || this.screen) {
      if (display && display !== this.screen) for (const t of display.getTracks()) t.stop();
      return false;
    }
    if ("contentHint" in track) track.contentHint = "detail"; // text and slides stay sharp
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener("ended", () => {
      if (this.screen === display) this.unshare();
    });
    this.screen = display;
    this.screenPreview.srcObject = display;
    this.screenPreview.play().catch(() => {});
    this.publisher.open();
    return true;
  }

  unshare() {
    if (!this.screen) return;
    this.releaseScreen();
    if (this.publishing) this.publisher.open();
    this.hooks.render();
  }

  releaseScreen() {
    const display = this.screen;
    if (!display) return;
    this.screen = null;
    for (const t of display.getTracks()) t.stop();
    this.screenPreview.srcObject = null;
    this.hooks.render();
  }

  // --- rendering -----------------------------------------------------------------------------

  /** @param {boolean} joinedAsTeacher */
  render(joinedAsTeacher) {
    const publishing = this.publishing;
    this.startBtn.disabled = !(joinedAsTeacher && this.stream && !publishing);
    this.stopBtn.disabled = !publishing;
    this.shareBtn.hidden = !!this.screen;
    this.shareBtn.disabled = !(joinedAsTeacher && publishing && typeof navigator.mediaDevices?.getDisplayMedia === "function");
    this.unshareBtn.hidden = !this.screen;
    this.unshareBtn.disabled = !publishing;
    this.screenPreview.hidden = !this.screen;
    document.body.classList.toggle("sharing", !!this.screen);
    const pending = publishing && this.publisher.media !== "connected";
    this.liveBadge.hidden = !publishing;
    this.liveBadge.textContent = pending ? "正在开始… Starting…" : "直播中 LIVE";
    this.liveBadge.classList.toggle("pending", pending);
    document.body.classList.toggle("publishing", publishing);
  }
}
