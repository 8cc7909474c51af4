// @ts-check
// Sky Classroom — the pupil page finds a way to the lesson by itself, without a reload (一个都不能少):
// WebRTC (straight to the server, or through TURN over UDP/TCP/TLS when `joined` names TURN
// servers: the browser tries every path at once) → the room's HLS over plain HTTPS → the lesson's
// recording (the player's own fallback when no live picture comes). A step is taken after a bounded
// wait: no first packet within a few seconds of the offer while the teacher is live, or the media
// connection failed even after asking again. Each step is told to the pupil in plain words and
// timed (`stats().ladder`).
//
// A page sent down to HLS climbs back: after CLIMB_FIRST_MS, then twice as long each time, it asks
// for a WebRTC subscription beside the HLS stream, which plays on meanwhile; the subscription's
// tracks are held until its first packets come, and only then replace the HLS picture.

import { showNotice } from "./dom.js";
import { RESUBSCRIBE_TRIES } from "./subscribe.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./subscribe.js").Subscription} Subscription */
/** @typedef {import("./rtc.js").Inbound} Inbound */

export const FIRST_PACKET_MS = 6000; // an offer whose media brings nothing this long: the path is blocked
export const CLIMB_FIRST_MS = 20_000; // on HLS after a failure, WebRTC is tried again this much later…
export const CLIMB_MAX_MS = 300_000; // …then twice as long each time, up to this

/**
 * @typedef {object} LadderMedia
 * @property {() => boolean} live the teacher is live
 * @property {() => number} bytes media received so far
 * @property {(held: [string, MediaStreamTrack][]) => void} climbed WebRTC works again: play these tracks
 */

export class Ladder {
  /**
   * @param {Signaling} signaling
   * @param {Subscription} subscription
   * @param {LadderMedia} media
   */
  constructor(signaling, subscription, media) {
    this.signaling = signaling;
    this.subscription = subscription;
    this.media = media;
    /** @type {{path: string, atMs: number, why: string}[]} each step, from page open */
    this.steps = [];
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.climbTimer = undefined;
    this.climbAfterMs = CLIMB_FIRST_MS;
    this.trying = false; // a WebRTC subscription is on trial beside the HLS stream
    /** @type {[string, MediaStreamTrack][]} the trial's tracks, held until its packets come */
    this.held = [];
  }

  /** A new offer is being answered: it has FIRST_PACKET_MS to bring media while the teacher is live. */
  offered() {
    clearTimeout(this.timer);
    if (this.trying) {
      this.timer = setTimeout(() => this.climbFailed("no_first_packet"), FIRST_PACKET_MS);
      return;
    }
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

  /**
   * A track of the subscription; true when the trial holds it back.
   * @param {string} slot
   * @param {MediaStreamTrack} track
   */
  hold(slot, track) {
    if (!this.trying) return false;
    this.held.push([slot, track]);
    return true;
  }

  /**
   * The trial subscription's counters: its first packet means WebRTC reaches this page again.
   * @param {Partial<Record<string, Inbound>>} slots
   */
  trial(slots) {
    if (!this.trying || !Object.values(slots).some((s) => s && (s.packetsReceived || 0) > 0)) return;
    clearTimeout(this.timer);
    this.trying = false;
    this.climbAfterMs = CLIMB_FIRST_MS;
    this.steps.push({ path: this.subscription.path || "direct", atMs: Math.round(performance.now()), why: "climbed_back" });
    console.info("skyclass: WebRTC reaches this page again; leaving the HTTP stream");
    showNotice("to_webrtc");
    this.signaling.delivery = "webrtc";
    const held = this.held;
    this.held = [];
    this.media.climbed(held);
  }

  /** The media connection failed and asking again did not help. */
  gaveUp() {
    if (this.trying) this.climbFailed("media_failed");
    else this.toHls("media_failed");
  }

  /** Back after a dropped connection: a trial in flight is void (the HLS stream goes on). */
  rejoined() {
    if (this.trying) this.climbFailed("reconnected");
  }

  /** @param {string} why */
  toHls(why) {
    if (this.signaling.delivery === "hls") return;
    this.steps.push({ path: "hls", atMs: Math.round(performance.now()), why });
    console.warn(`skyclass: WebRTC does not reach this page (${why}); switching to the HTTP stream`);
    showNotice("to_hls");
    this.signaling.delivery = "hls";
    this.signaling.dropConnection(); // joins again (the seat's secret resumes it) and is sent HLS
    this.scheduleClimb();
  }

  scheduleClimb() {
    clearTimeout(this.climbTimer);
    this.climbTimer = setTimeout(() => this.climb(), this.climbAfterMs);
  }

  /** Ask for a WebRTC subscription on trial; the HLS stream plays until it brings packets. */
  climb() {
    if (this.signaling.delivery !== "hls" || this.trying) return;
    if (this.signaling.state !== "joined" || !this.media.live()) {
      this.scheduleClimb(); // nothing to try with now
      return;
    }
    this.trying = true;
    this.held = [];
    this.subscription.resubscribes = RESUBSCRIBE_TRIES; // a trial that fails gives up at once
    console.info("skyclass: trying WebRTC again beside the HTTP stream");
    // An error instead of an offer (refused, the media worker full) must not leave the trial open.
    this.timer = setTimeout(() => this.climbFailed("no_offer"), FIRST_PACKET_MS);
    if (!this.signaling.send({ type: "subscribe" })) this.climbFailed("not_sent");
  }

  /** @param {string} why */
  climbFailed(why) {
    if (!this.trying) return;
    clearTimeout(this.timer);
    this.trying = false;
    this.held = [];
    this.subscription.close();
    this.climbAfterMs = Math.min(this.climbAfterMs * 2, CLIMB_MAX_MS);
    console.info(`skyclass: WebRTC still does not reach this page (${why}); next try in ${this.climbAfterMs / 1000} s`);
    this.scheduleClimb();
  }

  stats() {
    return { steps: this.steps.map((s) => ({ ...s })), delivery: this.signaling.delivery, trying: this.trying };
  }
}
