// @ts-check
// Sky Classroom — publishing, one way for the teacher's broadcast and the student on stage
// (docs/protocol.md, `publish`): the browser offers on a peer connection of its own, every
// m-line `sendonly` and named in `tracks` ("audio", "video", "video_low", "screen"), the offer
// goes out at once and the browser's ICE candidates follow it (`ice {target: "publish"}`); the
// server answers with `answer {target: "publish"}`.
//
// Publishing again (the teacher shares the screen, or stops sharing) opens a fresh peer
// connection with the tracks of now: the server takes it in place of the first, and the old
// connection is kept until the new one connects. One publish waits for its answer at a time; a
// change meanwhile publishes again after it.

import { showError } from "./dom.js";
import { newPeerConnection, trickleIce, addRemoteIce, findStat } from "./rtc.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").TrackName} TrackName */
/** @typedef {import("./protocol").PublishAnswer} PublishAnswer */
/** @typedef {import("./protocol").IceOut} IceOut */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */

/**
 * One m-line of a publication: `name` is what the `publish` message calls it.
 * @typedef {object} Outgoing
 * @property {MediaStreamTrack} track
 * @property {MediaStream} stream
 * @property {TrackName} name
 * @property {RTCRtpEncodingParameters} [encoding]
 */

/**
 * @typedef {object} PublisherHooks
 * @property {() => Outgoing[] | null} tracks what to send now, in m-line order; null: nothing to publish
 * @property {() => void} onChange something shown changed
 * @property {(why: "connection" | "answer" | "offer") => void} onFailed the media connection failed,
 *   or the answer could not be taken (both shown already: end the publication), or the offer could
 *   not be made or sent (shown: a replacement may fall back with `restore()`)
 */

/** The server refused the `publish` waiting for its answer (it leaves nothing to stop there). */
const REFUSALS = ["forbidden", "bad_sdp", "bad_state", "server_error"];

export class Publisher {
  /**
   * @param {Signaling} signaling
   * @param {PublisherHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    this.active = false; // between start() and close()
    /** @type {RTCPeerConnection | null} the publication */
    this.pc = null;
    /** @type {RTCPeerConnection | null} the publication being replaced: closed once the new one connects */
    this.oldPc = null;
    this.awaiting = false; // a `publish` waits for its answer
    this.sent = false; // … and it went out
    this.again = false; // the tracks changed while a publish was waiting for its answer
    /** @type {RTCPeerConnectionState | "closed"} the publication's connectionState (the old one's while a replacement connects) */
    this.media = "new";
    /** @type {Map<TrackName, RTCRtpSender>} the publication's senders by name */
    this.senders = new Map();
    /** @type {Map<TrackName, RTCRtpSender>} */
    this.oldSenders = new Map();
    // cached by poll()
    this.framesEncoded = 0; // the camera's, over the publications since start()
    this.encodedBase = 0; // framesEncoded of the publications replaced so far
    this.lastEncodedAt = 0;
    this.bytesSent = 0;
    this.screenFramesEncoded = 0;
    this.iceOut = 0; // `ice {target: "publish"}` sent that the server may still refuse (see strayIce)
  }

  /** The server answered the current publication. */
  get answered() {
    return !!this.pc && !this.awaiting;
  }

  start() {
    if (this.active) return Promise.resolve();
    this.active = true;
    this.iceOut = 0;
    return this.open();
  }

  /** Publish the tracks of now on a fresh peer connection (see the top of this file). */
  async open() {
    if (!this.active) return;
    const outgoing = this.hooks.tracks();
    if (!outgoing) return;
    if (this.awaiting) {
      this.again = true;
      return;
    }
    const previous = this.pc;
    if (previous) {
      if (this.oldPc && this.oldPc !== previous) this.oldPc.close();
      this.oldPc = previous;
      this.oldSenders = this.senders;
      this.encodedBase = this.framesEncoded;
    } else {
      this.media = "new";
    }
    this.awaiting = true;
    this.sent = false;
    this.again = false;
    const pc = newPeerConnection();
    this.pc = pc;
    const trickle = trickleIce(pc, this.signaling, "publish", () => {
      this.iceOut += 1;
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      const state = pc.connectionState;
      if (state === "connected" || state === "failed") this.closeOld();
      if (!this.oldPc) this.media = state;
      if (state === "failed") {
        this.hooks.onFailed("connection");
        return;
      }
      this.hooks.onChange();
    });
    /** @type {Map<TrackName, RTCRtpSender>} */
    const senders = new Map();
    for (const { track, stream, name, encoding } of outgoing) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: "sendonly", streams: [stream] };
      if (encoding) init.sendEncodings = [encoding];
      const { sender } = pc.addTransceiver(track, init);
      if (!senders.has(name)) senders.set(name, sender);
    }
    this.senders = senders;
    this.hooks.onChange();
    try {
      await pc.setLocalDescription(await pc.createOffer());
      if (this.pc !== pc) return; // stopped or replaced meanwhile
      const sdp = pc.localDescription ? pc.localDescription.sdp : "";
      if (!this.signaling.send({ type: "publish", sdp, tracks: outgoing.map((t) => t.name) })) throw new Error("not connected");
      this.sent = true;
      trickle.ready();
    } catch (e) {
      if (this.pc !== pc) return;
      console.error("skyclass: publish", e);
      showError({ code: "media_failed", message: String(e), fatal: false });
      this.hooks.onFailed("offer");
    }
  }

  /**
   * The server's `answer {target: "publish"}`: true when it belongs to the publication waiting for it.
   * @param {PublishAnswer} msg
   */
  takeAnswer(msg) {
    const pc = this.pc;
    if (msg.target !== "publish" || !pc || pc.signalingState !== "have-local-offer") return false;
    this.awaiting = false;
    this.settle(pc, msg.sdp);
    return true;
  }

  /**
   * @param {RTCPeerConnection} pc
   * @param {string} sdp
   */
  async settle(pc, sdp) {
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
    } catch (e) {
      console.error("skyclass: publish answer", e);
      showError({ code: "media_failed", message: String(e), fatal: false });
      this.hooks.onFailed("answer");
      return;
    }
    if (this.again && this.pc === pc) this.open();
    this.hooks.onChange();
  }

  /**
   * The server refused the publication waiting for its answer (`error` forbidden, bad_sdp, …).
   * @param {ErrorOut} msg
   */
  isRefusal(msg) {
    return this.sent && this.awaiting && REFUSALS.includes(msg.code);
  }

  /**
   * A candidate trickled for a publication the server no longer has (it ended, or was refused):
   * nothing for anyone to do. True when `msg` is that.
   * @param {ErrorOut} msg
   */
  strayIce(msg) {
    if (msg.code !== "bad_state" || this.iceOut <= 0 || !/publish/.test(msg.message || "")) return false;
    this.iceOut -= 1;
    console.debug("skyclass: publish candidate not taken:", msg.message);
    return true;
  }

  /**
   * A refused replacement leaves the broadcast as it was: go back to the publication before it.
   * False when there is none (the caller ends the publication).
   */
  restore() {
    const old = this.oldPc;
    if (!old || old.signalingState === "closed") return false;
    const refused = this.pc;
    this.oldPc = null;
    this.pc = old;
    this.senders = this.oldSenders;
    this.awaiting = false;
    this.sent = false;
    this.again = false;
    this.media = old.connectionState;
    if (refused) refused.close();
    return true;
  }

  closeOld() {
    const old = this.oldPc;
    this.oldPc = null;
    if (old) old.close();
  }

  /** Stop sending (the server is told apart: `unpublish`, when it has the publication). */
  close() {
    const pc = this.pc;
    this.pc = null;
    this.active = false;
    this.awaiting = false;
    this.sent = false;
    this.again = false;
    this.media = "closed";
    this.framesEncoded = 0;
    this.encodedBase = 0;
    this.bytesSent = 0;
    this.screenFramesEncoded = 0;
    this.senders = new Map();
    this.closeOld();
    if (pc) pc.close();
  }

  /** @param {IceOut} msg */
  addIce(msg) {
    addRemoteIce(this.pc, msg);
  }

  /** The camera's frames encoded so far (what the stats poller reads), and the screen's. */
  async poll() {
    const pc = this.pc;
    if (!pc || pc.signalingState === "closed") return;
    const camera = this.senders.get("video");
    const screen = this.senders.get("screen");
    const report = camera ? await camera.getStats() : await pc.getStats();
    const screenReport = screen ? await screen.getStats() : null;
    if (this.pc !== pc) return;
    const out = findStat(report, "outbound-rtp", "video");
    if (out) {
      const frames = this.encodedBase + (out.framesEncoded || 0);
      if (frames > this.framesEncoded) this.lastEncodedAt = performance.now();
      this.framesEncoded = frames;
      this.bytesSent = out.bytesSent || 0;
    }
    const screenOut = screenReport && findStat(screenReport, "outbound-rtp", "video");
    this.screenFramesEncoded = screenOut ? screenOut.framesEncoded || 0 : 0;
  }

  /** @param {TrackName} name */
  sender(name) {
    return this.senders.get(name) || null;
  }

  /** @param {TrackName} name */
  drop(name) {
    this.senders.delete(name);
  }
}
