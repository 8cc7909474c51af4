// @ts-check
// Sky Classroom — WebRTC helpers of the publish and subscribe connections: the peer connection,
// trickled ICE, the subscription's slots, and reading getStats().

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").IceOut} IceOut */

export const STATS_INTERVAL_MS = 250;

/** @type {RTCConfiguration} the TURN servers `joined` gave (none: the server is reached directly) */
const config = { iceServers: [], iceTransportPolicy: "all" };

/**
 * The ICE servers of `joined` (TURN, with this participant's short-lived credentials), and whether
 * the media goes through them only (`?relay=1`: a network where only TURN over TCP/TLS passes).
 * @param {RTCIceServer[]} servers
 * @param {boolean} [relayOnly] the page's `?relay=1` by default
 */
export function useIceServers(servers, relayOnly = new URLSearchParams(location.search).get("relay") === "1") {
  config.iceServers = servers;
  config.iceTransportPolicy = relayOnly && servers.length ? "relay" : "all";
}

export function newPeerConnection() {
  return new RTCPeerConnection({ ...config });
}

/**
 * The connection's selected candidate pair: the media's path (through TURN, or straight), the
 * local address it leaves from (it changes when the device's network does), and the round trip
 * its ICE checks measured (seconds), if any.
 * @param {RTCStatsReport} report
 * @returns {{path: "relay" | "direct", local: string, rtt: number | null} | null}
 */
export function selectedPair(report) {
  for (const s of report.values()) {
    if (s.type !== "candidate-pair" || !(s.selected || s.nominated) || s.state !== "succeeded") continue;
    const local = report.get(s.localCandidateId);
    if (!local) continue;
    const rtt = typeof s.currentRoundTripTime === "number" ? s.currentRoundTripTime : null;
    return { path: local.candidateType === "relay" ? "relay" : "direct", local: `${local.address}:${local.port}`, rtt };
  }
  return null;
}

/**
 * Trickle the browser's ICE candidates as `ice {target, candidate, sdpMid, sdpMLineIndex}`.
 * Candidates are held back until `ready()` is called, i.e. until the offer/answer they
 * belong to has been sent, so the server never sees `ice` before the description.
 * `onSent` counts each `ice` that went out.
 * @param {RTCPeerConnection} pc
 * @param {Signaling} signaling
 * @param {"publish" | "subscribe"} target
 * @param {() => void} [onSent]
 */
export function trickleIce(pc, signaling, target, onSent) {
  let ready = false;
  /** @type {(RTCIceCandidate | null)[]} */
  const held = [];
  /** @param {RTCIceCandidate | null} c */
  const sendOne = (c) => {
    const j = c ? c.toJSON() : null;
    const sent = signaling.send({
      type: "ice",
      target,
      candidate: j ? (j.candidate ?? null) : null,
      sdpMid: j ? (j.sdpMid ?? null) : null,
      sdpMLineIndex: j ? (j.sdpMLineIndex ?? null) : null,
    });
    if (sent && onSent) onSent();
  };
  pc.addEventListener("icecandidate", (ev) => {
    if (pc.signalingState === "closed") return;
    if (ready) sendOne(ev.candidate);
    else held.push(ev.candidate);
  });
  return {
    ready() {
      if (ready) return;
      ready = true;
      for (const c of held.splice(0)) sendOne(c);
    },
  };
}

/**
 * A candidate the server trickled (its own are in its SDP; take one all the same).
 * @param {RTCPeerConnection | null | undefined} pc
 * @param {IceOut} msg
 */
export function addRemoteIce(pc, msg) {
  if (!pc || !msg.candidate) return;
  pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
}

// --- the subscription's slots ----------------------------------------------------------

/**
 * What each m-line of the server's subscription offer carries, in order (docs/protocol.md):
 * the teacher's microphone and camera, the teacher's shared screen, the student on stage.
 * The offer names them in `slots`; this is the order to assume when it does not.
 * @type {readonly string[]}
 */
export const DEFAULT_SLOTS = ["audio", "video", "screen", "stage_audio", "stage_video"];

/**
 * The slot of one of a subscription's transceivers. The browser answers the server's offer
 * and adds no transceivers of its own, so the transceivers come in m-line order.
 * @param {RTCPeerConnection} pc
 * @param {RTCRtpTransceiver} transceiver
 * @param {readonly string[] | null | undefined} slots
 * @returns {string | null}
 */
export function slotOf(pc, transceiver, slots) {
  const names = Array.isArray(slots) && slots.length ? slots : DEFAULT_SLOTS;
  const i = pc.getTransceivers().indexOf(transceiver);
  return i >= 0 && i < names.length ? names[i] : null;
}

/**
 * An inbound-rtp report, with the fields the pages read.
 * @typedef {RTCInboundRtpStreamStats & {
 *   mid?: string, trackIdentifier?: string, freezeCount?: number, totalFreezesDuration?: number,
 *   concealedSamples?: number, totalSamplesReceived?: number,
 * }} Inbound
 */

/**
 * The inbound-rtp report of each slot that has received something: {slot: report}.
 * @param {RTCStatsReport} report
 * @param {RTCPeerConnection} pc
 * @param {readonly string[] | null | undefined} slots
 * @returns {Partial<Record<string, Inbound>>}
 */
export function inboundBySlot(report, pc, slots) {
  /** @type {Map<string, Inbound>} */
  const byMid = new Map();
  /** @type {Map<string, Inbound>} */
  const byTrack = new Map();
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp") continue;
    if (s.mid !== undefined && s.mid !== null) byMid.set(String(s.mid), s);
    if (s.trackIdentifier) byTrack.set(s.trackIdentifier, s);
  }
  /** @type {Partial<Record<string, Inbound>>} */
  const out = {};
  for (const t of pc.getTransceivers()) {
    const slot = slotOf(pc, t, slots);
    if (!slot) continue;
    const s = (t.mid !== null && byMid.get(String(t.mid))) || byTrack.get(t.receiver.track.id);
    if (s) out[slot] = s;
  }
  return out;
}

/**
 * Put `track` in `stream` in place of any other track of its kind.
 * @param {MediaStream} stream
 * @param {MediaStreamTrack} track
 */
export function replaceTrack(stream, track) {
  for (const t of stream.getTracks()) if (t.kind === track.kind && t !== track) stream.removeTrack(t);
  if (!stream.getTracks().includes(track)) stream.addTrack(track);
}

/**
 * Poll `fn` every `ms` milliseconds; never runs two at once.
 * @param {() => Promise<void>} fn
 * @param {number} [ms]
 */
export function poll(fn, ms = STATS_INTERVAL_MS) {
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await fn();
    } catch (e) {
      console.debug("skyclass: poll", e);
    } finally {
      busy = false;
    }
  }, ms);
  return () => clearInterval(timer);
}

/**
 * Find the first report of `type` and `kind` in an RTCStatsReport.
 * @param {RTCStatsReport} report
 * @param {string} type
 * @param {string} kind
 * @returns {any}
 */
export function findStat(report, type, kind) {
  for (const s of report.values()) {
    if (s.type === type && (s.kind || s.mediaType) === kind) return s;
  }
  return null;
}
