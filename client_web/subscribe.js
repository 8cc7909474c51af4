// @ts-check
// Sky Classroom — the subscription of both pages (docs/protocol.md): the server offers, the
// browser answers (recvonly, five transceivers named by the offer's `slots`). Every offer is a
// new subscription — at join, after a reconnect, after `subscribe` — whose peer connection
// replaces the old one. A media connection that fails asks for a fresh subscription a few times.

import { newPeerConnection, trickleIce, addRemoteIce, slotOf, inboundBySlot, selectedPair } from "./rtc.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").Offer} Offer */
/** @typedef {import("./protocol").IceOut} IceOut */
/** @typedef {import("./rtc.js").Inbound} Inbound */

export const RESUBSCRIBE_TRIES = 3; // a failed media connection asks for a fresh subscription this often
export const LOSS_WINDOW_MS = 5000; // the loss share is measured over windows this long

/**
 * @typedef {object} SubscriptionHooks
 * @property {(slot: string, track: MediaStreamTrack) => void} onTrack a track of the offer's slot `slot`
 * @property {() => void} onChange the connection's state changed
 * @property {() => void} [onGiveUp] failed, and asking again did not help (or could not be sent)
 * @property {() => void} [onMoved] the media now leaves from another local address (the network changed)
 */

export class Subscription {
  /**
   * @param {Signaling} signaling
   * @param {SubscriptionHooks} hooks
   */
  constructor(signaling, hooks) {
    /** @type {"relay" | "direct" | null} how the media comes: through TURN, or straight from the server */
    this.path = /** @type {"relay" | "direct" | null} */ (null);
    this.signaling = signaling;
    this.hooks = hooks;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {string[] | null} the offer's slots */
    this.slots = null;
    /** @type {RTCPeerConnectionState | "closed"} */
    this.media = "new";
    this.count = 0; // offers taken
    this.resubscribes = 0; // `subscribe` sent since the media last connected
    this.bytes = 0; // received by every subscription of this page: the data this lesson has used
    this.bytesBefore = 0; // …by the subscriptions before this one
    /** @type {string | null} the local address:port the media arrives on (selectedPair) */
    this.local = null;
    /** @type {number | null} round trip to the server, ms (ICE's checks) */
    this.rttMs = null;
    /** @type {number | null} share of the packets lost over the last LOSS_WINDOW_MS */
    this.loss = null;
    /** @type {{at: number, lost: number, received: number} | null} the counters at the window's start */
    this.lossFrom = null;
  }

  /**
   * Answer a new offer on a fresh peer connection. Resolves to what went wrong (logged; the page
   * may say so), or null: answered, or replaced meanwhile by a newer offer.
   * @param {Offer} msg
   * @returns {Promise<string | null>}
   */
  async take(msg) {
    this.close();
    this.bytesBefore = this.bytes;
    this.local = null;
    this.lossFrom = null; // a new connection's counters start from zero…
    this.loss = null; // …and its path has not been measured yet
    this.rttMs = null;
    const slots = msg.slots;
    const pc = newPeerConnection();
    this.pc = pc;
    this.slots = Array.isArray(slots) ? slots : null;
    this.media = pc.connectionState;
    const trickle = trickleIce(pc, this.signaling, "subscribe");
    this.count += 1;
    pc.addEventListener("track", (ev) => {
      if (this.pc !== pc) return;
      const slot = slotOf(pc, ev.transceiver, slots);
      if (slot) this.hooks.onTrack(slot, ev.track);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      this.media = pc.connectionState;
      if (pc.connectionState === "connected") this.resubscribes = 0;
      // Reconnecting: the re-join brings a fresh offer.
      if (pc.connectionState === "failed" && this.signaling.state === "joined") {
        if (this.resubscribes < RESUBSCRIBE_TRIES && this.signaling.send({ type: "subscribe" })) {
          this.resubscribes += 1;
          console.warn("skyclass: media connection failed; asking for a fresh subscription");
        } else if (this.hooks.onGiveUp) {
          this.hooks.onGiveUp();
        }
      }
      this.hooks.onChange();
    });
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (this.pc !== pc) return null; // replaced by a newer offer meanwhile
      this.signaling.send({ type: "answer", target: "subscribe", sdp: pc.localDescription ? pc.localDescription.sdp : "" });
      trickle.ready();
      return null;
    } catch (e) {
      if (this.pc !== pc) return null;
      console.error("skyclass: subscribe", e);
      return String(e);
    }
  }

  /** Close the connection (a newer offer replaces it, or the session is over). */
  close() {
    const old = this.pc;
    if (!old) return;
    this.pc = null;
    old.close();
  }

  /** @param {IceOut} msg */
  addIce(msg) {
    addRemoteIce(this.pc, msg);
  }

  /**
   * The share of packets lost lately, from every inbound stream's counters: a window restarts
   * every LOSS_WINDOW_MS.
   * @param {RTCStatsReport} report
   */
  countLoss(report) {
    let lost = 0;
    let received = 0;
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp") continue;
      lost += Math.max(0, s.packetsLost || 0);
      received += s.packetsReceived || 0;
    }
    const now = performance.now();
    const from = this.lossFrom;
    if (!from || received < from.received) {
      this.lossFrom = { at: now, lost, received };
      return;
    }
    const expected = lost - from.lost + (received - from.received);
    if (now - from.at < LOSS_WINDOW_MS) return;
    this.loss = expected > 0 ? Math.max(0, lost - from.lost) / expected : this.loss;
    this.lossFrom = { at: now, lost, received };
  }

  /**
   * The inbound-rtp report of each slot; null without a connection, or when a newer one
   * replaced it meanwhile (those counters belong to the old one).
   * @returns {Promise<Partial<Record<string, Inbound>> | null>}
   */
  async inbound() {
    const pc = this.pc;
    if (!pc || pc.signalingState === "closed") return null;
    const report = await pc.getStats();
    if (this.pc !== pc) return null;
    const pair = selectedPair(report);
    if (pair) {
      if (this.local && pair.local !== this.local && this.hooks.onMoved) this.hooks.onMoved();
      this.path = pair.path;
      this.local = pair.local;
      if (pair.rtt !== null) this.rttMs = Math.round(pair.rtt * 1000);
    }
    this.countLoss(report);
    for (const s of report.values()) {
      if (s.type === "transport") this.bytes = this.bytesBefore + (s.bytesReceived || 0);
    }
    return inboundBySlot(report, pc, this.slots);
  }
}
