// @ts-check
// Sky Classroom — the pupil page finds a way to the lesson by itself, without a reload (一个都不能少):
// WebRTC (straight to the server, or through TURN over UDP/TCP/TLS when `joined` names TURN
// servers: the browser tries every path at once) → the room's HLS over plain HTTPS → the lesson's
// recording (the player's own fallback when no live picture comes). A step is taken after a bounded
// wait: no first packet within a few seconds of the offer while the teacher is live, or the media
// connection failed even after asking again. Each step is told to the pupil in plain words and
// timed (`stats().ladder`).

import { showNotice } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./subscribe.js").Subscription} Subscription */

export const FIRST_PACKET_MS = 6000; // an offer whose media brings nothing this long: the path is blocked

export class Ladder {
  /**
   * @param {Signaling} signaling
   * @param {Subscription} subscription
   * @param {{live: () => boolean, bytes: () => number}} media the teacher is live; media bytes received
   */
  constructor(signaling, subscription, media) {
    this.signaling = signaling;
    this.subscription = subscription;
    this.media = media;
    /** @type {{path: string, atMs: number, why: string}[]} each step, from page open */
    this.steps = [];
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /** A new offer is being answered: it has FIRST_PACKET_MS to bring media while the teacher is live. */
  offered() {
    clearTimeout(this.timer);
    if (this.signaling.delivery === "hls") return;
    const before = this.media.bytes();
    const check = () => {
      if (this.signaling.delivery === "hls" || this.media.bytes() > before) return;
      if (!this.media.live()) {
        this.timer = setTimeout(check, 1000); // nothing to receive yet: wait for the teacher
        return;
      }
      this.toHls("no_first_packet");
    };
    this.timer = setTimeout(check, FIRST_PACKET_MS);
  }

  /** The media connection failed and asking again did not help. */
  gaveUp() {
    this.toHls("media_failed");
  }

  /** @param {string} why */
  toHls(why) {
    if (this.signaling.delivery === "hls") return;
    this.steps.push({ path: "hls", atMs: Math.round(performance.now()), why });
    console.warn(`skyclass: WebRTC does not reach this page (${why}); switching to the HTTP stream`);
    showNotice("to_hls");
    this.signaling.delivery = "hls";
    this.signaling.dropConnection(); // joins again (the seat's secret resumes it) and is sent HLS
  }

  stats() {
    return { steps: this.steps.map((s) => ({ ...s })), delivery: this.signaling.delivery };
  }
}
