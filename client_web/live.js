// @ts-check
// Sky Classroom — the teacher's live video on the student page, as it arrives: the
// subscription's "audio" and "video" slots (the teacher's microphone and camera) in #video, its
// "screen" slot (the teacher's shared screen) in #screen, or — for a viewer the server sends to
// its HLS tier (`joined.hls`) — the playlist through hls.js while the teacher is live. Counts the
// frames and packets over the subscriptions so far; knows whether the teacher is live
// (`broadcast {live}`) and at which layer our link gets the camera (`quality`).

import { video } from "./dom.js";
import { replaceTrack } from "./rtc.js";
import { HlsPlayer } from "./hlsplayer.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./autoplay.js").Autoplay} Autoplay */
/** @typedef {import("./protocol").Joined} Joined */
/** @typedef {import("./protocol").Quality} Quality */
/** @typedef {import("./rtc.js").Inbound} Inbound */

export const FRAME_FRESH_MS = 2000; // "live" needs a decoded frame at most this long ago
export const FREEZE_MS = 1500; // live slot: no new frame for this long while live → play the recording
const JOIN_GRACE_MS = 2500; // joining while the teacher is live: time for the subscription to connect
// The shared screen shows while its frames flow. A still screen still brings a frame about every
// second (the sender repeats frames of an idle screen), so a longer gap means it stopped.
const SCREEN_STALE_MS = 3000;

/**
 * @typedef {object} LiveHooks
 * @property {() => boolean} recorded the recording plays now (the live video goes on underneath, muted)
 * @property {() => void} render
 */

export class LiveVideo {
  /**
   * @param {Signaling} signaling
   * @param {Autoplay} autoplay
   * @param {LiveHooks} hooks
   */
  constructor(signaling, autoplay, hooks) {
    this.signaling = signaling;
    this.autoplay = autoplay;
    this.hooks = hooks;
    this.video = video("video");
    this.screenVideo = video("screen");
    this.hlsPlayer = new HlsPlayer(this.video);
    this.remoteStream = new MediaStream(); // the teacher's microphone and camera
    this.screenStream = new MediaStream(); // the teacher's shared screen
    this.live = false; // the server's broadcast flag
    this.liveSince = -Infinity; // performance.now() when `live` last became true
    this.liveEndedAt = -Infinity; // performance.now() when `live` last became false (or joined with false)
    this.graceUntil = -Infinity; // joined while live: no freeze before this time
    /** @type {string | null} the playlist this viewer watches instead (joined.hls) */
    this.hls = null;
    this.hlsFrames = 0; // the HLS video element's own frame count, last seen
    this.soundOnly = false; // saving data on HLS: the sound-only rendition beside the playlist
    this.hlsTime = 0; // the element's currentTime, last seen (sound only: no frames to count)
    /** @type {Quality["layer"]} the teacher's camera as our link gets it: high, low, or still pictures */
    this.layer = "high";
    /** @type {string | null} */
    this.layerReason = null;
    this.playing = false; // the live video was started
    // cached by the stats poller
    this.freezes = { count: 0, seconds: 0 };
    this.audioConcealed = 0;
    this.framesDecoded = 0;
    this.lastFrameAt = -Infinity; // performance.now() of the last increase of framesDecoded
    this.framesResumedAt = -Infinity; // performance.now() of the first increase after a pause of FREEZE_MS
    this.bytesReceived = 0;
    this.audioPacketsReceived = 0;
    this.screenFrames = 0;
    this.screenLastFrameAt = -Infinity;
    // counters of the peer connections replaced so far (after a reconnect), so the totals go on
    this.base = { frames: 0, bytes: 0, audio: 0, screen: 0 };
    for (const ev of ["resize", "playing"]) this.screenVideo.addEventListener(ev, hooks.render);
    this.video.addEventListener("resize", hooks.render);
  }

  /** @param {boolean} live */
  setLive(live) {
    const now = performance.now();
    if (live && !this.live) this.liveSince = now;
    if (!live && this.live) this.liveEndedAt = now;
    this.live = live;
  }

  /**
   * `joined`: the first, or again after a dropped connection (a fresh subscription offer follows).
   * @param {Joined} msg
   * @param {boolean} first
   */
  joined(msg, first) {
    const now = performance.now();
    if (first) {
      this.live = !!msg.live;
      if (this.live) {
        this.liveSince = now;
        this.graceUntil = now + JOIN_GRACE_MS;
      } else {
        this.liveEndedAt = now;
      }
    } else {
      this.setLive(!!msg.live);
      this.graceUntil = now + JOIN_GRACE_MS;
    }
    this.hls = msg.hls || null;
    this.syncHls();
  }

  /** @param {Quality} msg */
  quality(msg) {
    this.layer = msg.layer;
    this.layerReason = msg.reason;
    console.info(`skyclass: video layer ${msg.layer} (${msg.reason})`);
  }

  /** The teacher's frames are fresh: live, a frame lately, and a picture. */
  fresh(now = performance.now()) {
    const shown = this.video.videoWidth > 0 || (!!this.hls && this.soundOnly);
    return this.live && now - this.lastFrameAt < FRAME_FRESH_MS && shown;
  }

  /** The shared screen's frames flow (shown only while the live video is). */
  screenFlowing(now = performance.now()) {
    return this.live && now - this.screenLastFrameAt < SCREEN_STALE_MS && this.screenVideo.videoWidth > 0;
  }

  /**
   * A track of the subscription; false when it is not one of the teacher's.
   * @param {string} slot
   * @param {MediaStreamTrack} track
   */
  addTrack(slot, track) {
    const v = this.video;
    if (slot === "audio" || slot === "video") {
      replaceTrack(this.remoteStream, track);
      if (v.srcObject !== this.remoteStream) v.srcObject = this.remoteStream;
      if (this.playing && v.paused) v.play().catch(() => {});
      this.startPlayback();
      return true;
    }
    if (slot === "screen") {
      replaceTrack(this.screenStream, track);
      if (this.screenVideo.srcObject !== this.screenStream) this.screenVideo.srcObject = this.screenStream;
      this.screenVideo.play().catch(() => {}); // no sound: it is muted
      return true;
    }
    return false;
  }

  async startPlayback() {
    if (this.playing) return;
    this.playing = true;
    const v = this.video;
    if (this.hooks.recorded()) {
      // The recording plays now: start the live video silently underneath.
      v.muted = true;
      v.play().catch(() => {});
      return;
    }
    v.muted = false;
    try {
      await v.play();
      this.autoplay.blocked = false;
    } catch (e) {
      if (/** @type {Error} */ (e).name === "NotAllowedError") {
        // Autoplay with sound is blocked: play muted and offer a button.
        this.autoplay.blocked = true;
        v.muted = true;
        v.play().catch((e2) => console.warn("skyclass: muted play", e2));
      } else {
        console.warn("skyclass: play", e);
        this.playing = false;
      }
    }
    this.hooks.render();
  }

  /** A new subscription: its counters start from zero, ours go on. */
  rebase() {
    this.base = { frames: this.framesDecoded, bytes: this.bytesReceived, audio: this.audioPacketsReceived, screen: this.screenFrames };
  }

  /** @param {Partial<Record<string, Inbound>>} slots */
  count(slots) {
    const base = this.base;
    // By slot only: the first video report of the connection may be the screen or the stage.
    const v = slots.video;
    const a = slots.audio;
    const now = performance.now();
    if (slots.screen) {
      const frames = base.screen + (slots.screen.framesDecoded || 0);
      if (frames > this.screenFrames) this.screenLastFrameAt = now;
      this.screenFrames = frames;
    }
    if (v) {
      const frames = base.frames + (v.framesDecoded || 0);
      if (frames > this.framesDecoded) this.frameCame(performance.now());
      this.framesDecoded = frames;
      this.bytesReceived = base.bytes + (v.bytesReceived || 0);
      // The browser's own count of freezes (a frame late by max(3 x the usual gap, the gap + 150 ms)).
      this.freezes = { count: v.freezeCount || 0, seconds: v.totalFreezesDuration || 0 };
    }
    if (a) {
      this.audioPacketsReceived = base.audio + (a.packetsReceived || 0);
      this.audioConcealed = a.concealedSamples && a.totalSamplesReceived ? a.concealedSamples / a.totalSamplesReceived : 0;
    }
  }

  /** @param {number} now */
  frameCame(now) {
    if (now - this.lastFrameAt >= FREEZE_MS) this.framesResumedAt = now;
    this.lastFrameAt = now;
  }

  // --- HLS ----------------------------------------------------------------------------------

  /** The HLS player runs while the teacher is live (under the recording too, muted, like WebRTC). */
  syncHls() {
    const player = this.hlsPlayer;
    const url = this.hls && this.soundOnly ? this.hls.replace(/index\.m3u8$/, "audio.m3u8") : this.hls;
    if (url && this.live && this.signaling.state === "joined") {
      if (player.url === url) return;
      player.play(url).then(() => {
        if (this.hooks.recorded()) this.video.play().catch(() => {});
        else this.autoplay.play(this.video);
      });
    } else if (player.url) {
      player.stop();
    }
  }

  /** Count the HLS pictures like the WebRTC ones (the element's count starts over with each stream). */
  countHls() {
    if (!this.hls) return;
    if (this.soundOnly) {
      // The sound plays on: it counts as the stream being fresh.
      const t = this.video.currentTime;
      if (t > this.hlsTime) this.frameCame(performance.now());
      this.hlsTime = t;
      return;
    }
    const frames = this.hlsPlayer.frames();
    const added = frames >= this.hlsFrames ? frames - this.hlsFrames : frames;
    this.hlsFrames = frames;
    if (added > 0) {
      this.frameCame(performance.now());
      this.framesDecoded += added;
    }
  }

  /** What stats() says of the HLS player, or null for a WebRTC viewer. */
  hlsStats() {
    if (!this.hls) return null;
    const player = this.hlsPlayer;
    return { url: this.hls, playing: player.url, latency: player.latency(), errors: player.errors, soundOnly: this.soundOnly };
  }
}
