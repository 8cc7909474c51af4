// @ts-check
// Sky Classroom — the signaling connection of both pages (docs/protocol.md): one websocket at /ws,
// JSON text frames, `join` first, `ping` every 20 s. A connection that drops (without `removed`,
// `lesson_ended` or a fatal error) comes back by itself with the same token; within 30 s the
// server resumes the session (`joined.resumed`).

import { pageToken } from "./credential.js";
import { showError, clearError, shownError } from "./dom.js";

/** @typedef {import("./protocol").ServerMessage} ServerMessage */
/** @typedef {import("./protocol").ClientMessage} ClientMessage */
/** @typedef {import("./protocol").Joined} Joined */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */
/** @typedef {"auto" | "webrtc" | "hls"} Delivery */
/** @typedef {"connecting" | "joined" | "reconnecting" | "closed" | "error"} SignalingState */

export const PING_INTERVAL_MS = 20_000;
export const PONG_TIMEOUT_MS = 10_000; // no message at all this long after a ping: the connection is dead
export const RECONNECT_MIN_MS = 500; // then 1 s, 2 s, 4 s, 5 s, 5 s, …
export const RECONNECT_MAX_MS = 5000;
export const PROBE_MS = 2000; // a ping sent when the media stopped: no answer this long (a slow 3G link's
// round trip is well under), the socket is dead

/**
 * room and token from the page address (?room=R&token=T).
 * @returns {{room: string, token: string, delivery: Delivery}}
 */
export function pageParams() {
  const q = new URLSearchParams(location.search);
  // delivery: "hls" asks for the HTTP stream (networks that block WebRTC); the server may choose it anyway
  const asked = q.get("delivery");
  const delivery = asked === "webrtc" || asked === "hls" ? asked : "auto";
  return { room: (q.get("room") || "").trim(), token: pageToken(), delivery };
}

/**
 * The secret `joined.resume` gave this tab's seat: the next join sends it, so that a page whose
 * old connection still hangs on the server (a phone that changed networks, a reload) takes its
 * seat back at once, which the same link opened elsewhere cannot.
 * @param {string} room
 */
const seatKey = (room) => `skyclass.seat:${room}`;

// Close codes that follow a refusal (bad token, wrong room, removed, …): never reconnect after them.
/** @param {number} code */
const REFUSED_CLOSE = (code) => code >= 4400 && code < 4500;
// Close codes that ask for a reconnect even before the first `joined`: the room moved to another
// node (1012), cannot be reached for a moment (1013), or the server is full (4503; it says when).
/** @param {number} code */
const RETRY_CLOSE = (code) => code === 1012 || code === 1013 || code === 4503;
const RETRY_ERRORS = new Set(["unavailable", "server_full"]);

/**
 * @typedef {object} SignalingOptions
 * @property {string} room
 * @property {string} token
 * @property {Delivery} [delivery]
 * @property {(msg: ServerMessage) => void} [onMessage] every message but `pong`
 * @property {() => void} [onChange] `state` changed
 * @property {(msg: ErrorOut) => boolean} [onError] a non-fatal server error: true when the page showed it itself
 */

/**
 * One websocket to /ws. Sends `join` on open, pings every 20 s, shows server errors, and comes
 * back by itself when the connection drops.
 *
 * `onMessage(msg)` gets every message but `pong`; `onChange()` is called whenever `state`
 * changes: "connecting" → "joined" → "closed" (or "error" after a fatal error), with
 * "reconnecting" between a dropped connection and the next `joined`. `onError(msg)` may take a
 * non-fatal server error for itself (return true) instead of the #error box.
 *
 * A dropped connection (no `leave`, `removed`, `lesson_ended` or fatal error before it) is
 * opened again after 0.5 s, 1 s, 2 s, … at most 5 s, with the same room and token.
 */
export class Signaling {
  /** @param {SignalingOptions} options */
  constructor({ room, token, delivery = "auto", onMessage, onChange, onError }) {
    this.room = room;
    this.token = token;
    this.delivery = delivery;
    this.onMessage = onMessage || (() => {});
    this.onChange = onChange || (() => {});
    this.onError = onError || (() => false);
    /** @type {SignalingState} */
    this.state = "connecting";
    /** @type {Joined | null} the latest `joined` message */
    this.joined = null;
    /** @type {ErrorOut | null} the fatal error, if any */
    this.fatal = null;
    /** @type {"removed" | "lesson_ended" | null} the server let us go for good */
    this.ended = null;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    this.leaving = false;
    this.epoch = 0; // websockets opened so far; a page can tell what came on the current one
    this.everJoined = false;
    this.attempt = 0; // reconnect attempts since the last `joined`
    this.reconnects = 0; // `joined` again after a dropped connection
    this.retryAfterMs = 0; // the server asked us to wait this long before the next attempt
    this.lastIn = 0; // performance.now() of the last message on the current socket
    this.probing = false; // a check() waits for its answer
  }
  /**
   * This tab's seat secret for the room: read, or (given) kept.
   * @param {string} [secret]
   * @returns {string}
   */
  seat(secret) {
    try {
      if (secret) sessionStorage.setItem(seatKey(this.room), secret);
      return sessionStorage.getItem(seatKey(this.room)) || "";
    } catch {
      return secret || "";
    }
  }


  get url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  /** The session is over for good (closed, or a fatal error). */
  get over() {
    return this.state === "closed" || this.state === "error";
  }

  start() {
    // pagehide: say goodbye so the server frees our seat at once.
    window.addEventListener("pagehide", () => this.leave());
    // Back online: do not wait for the rest of the backoff.
    window.addEventListener("online", () => {
      if (this.retryTimer === null) return;
      clearTimeout(this.retryTimer);
      this.connect();
    });
    this.connect();
  }

  connect() {
    this.retryTimer = null;
    if (this.leaving) return;
    let opened = false;
    let pingAt = 0; // performance.now() of the last ping
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.epoch += 1;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      opened = true;
      /** @type {Extract<ClientMessage, {type: "join"}>} */
      const join = { type: "join", room: this.room, token: this.token };
      if (this.delivery !== "auto") join.delivery = this.delivery;
      const seat = this.seat();
      if (seat) join.resume = seat;
      this.send(join);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (ws !== this.ws) return;
        if (pingAt && this.lastIn < pingAt && performance.now() - pingAt > PONG_TIMEOUT_MS) {
          // Not even a pong since the last ping: the network is gone without the socket noticing.
          this.abandon(ws, false);
          return;
        }
        pingAt = performance.now();
        this.send({ type: "ping" });
      }, PING_INTERVAL_MS);
    });
    ws.addEventListener("message", (ev) => {
      if (ws !== this.ws) return;
      this.lastIn = performance.now();
      /** @type {ServerMessage} */
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn("skyclass: not JSON from server", ev.data);
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      if (msg.type === "pong") return;
      if (msg.type === "joined") {
        this.joined = msg;
        this.seat(msg.resume);
        if (this.everJoined) this.reconnects += 1;
        this.everJoined = true;
        this.attempt = 0;
        if (shownError() === "server_full") clearError();
        this.setState("joined");
      } else if (msg.type === "removed" || msg.type === "lesson_ended") {
        this.ended = msg.type; // the server closes the socket next; no coming back
      } else if (msg.type === "error") {
        this.serverError(msg);
      }
      try {
        this.onMessage(msg);
      } catch (e) {
        console.error("skyclass: handling", msg.type, e);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (ws !== this.ws) return;
      this.closed(ev, opened);
    });
  }

  /**
   * The media stopped: is the socket still there? A ping without an answer within PROBE_MS means
   * the network changed under it (a phone from Wi-Fi to 4G): reconnect now, not after PONG_TIMEOUT_MS.
   */
  check() {
    const ws = this.ws;
    const sent = performance.now();
    if (this.probing || this.state !== "joined" || !ws || !this.send({ type: "ping" })) return;
    this.probing = true;
    setTimeout(() => {
      this.probing = false;
      if (ws === this.ws && this.lastIn < sent) this.abandon(ws, true);
    }, PROBE_MS);
  }

  /**
   * Give up on a socket the server does not answer on, and connect again (`now`: at once).
   * @param {WebSocket} ws
   * @param {boolean} now the network changed: the first attempt goes at once
   */
  abandon(ws, now) {
    console.warn("skyclass: no answer from the server; reconnecting");
    this.ws = null;
    try {
      ws.close();
    } catch {
      /* already closed */
    }
    this.closed({ code: 1006 }, true, now && this.attempt === 0); // at once the first time only
  }

  /** @param {ErrorOut} msg */
  serverError(msg) {
    console.warn("skyclass: server error", msg);
    if (RETRY_ERRORS.has(msg.code)) {
      // The room's node is away for a moment, or the server is full: the socket closes and we
      // come back, not before the server's retry_after.
      this.retryAfterMs = (msg.retry_after || 0) * 1000;
      if (msg.code === "server_full") showError({ ...msg, fatal: false }); // cleared once we are in
    } else if (msg.fatal) {
      this.fatal = msg;
      this.setState("error");
      showError(msg);
    } else {
      let taken = false;
      try {
        taken = this.onError(msg) === true;
      } catch (e) {
        console.error("skyclass: handling error", e);
      }
      if (!taken) showError(msg);
    }
  }

  /**
   * The current socket is gone: reconnect, or settle on "closed".
   * @param {{code: number}} ev
   * @param {boolean} opened
   * @param {boolean} [now] try again at once (the socket was found dead, not closed by the server)
   */
  closed(ev, opened, now = false) {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
    if (this.state === "error") {
      this.onChange();
      return;
    }
    if (this.leaving || this.ended) {
      this.setState("closed");
      return;
    }
    if ((this.everJoined || RETRY_CLOSE(ev.code)) && !REFUSED_CLOSE(ev.code)) {
      const backoff = now ? 0 : Math.min(RECONNECT_MIN_MS * 2 ** this.attempt, RECONNECT_MAX_MS);
      const delay = Math.max(backoff, this.retryAfterMs);
      this.retryAfterMs = 0;
      this.attempt += 1;
      console.info(`skyclass: connection lost (code ${ev.code}); reconnecting in ${delay} ms`);
      this.setState("reconnecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
      return;
    }
    if (!opened) showError({ code: "no_server", message: "", fatal: true });
    else if (ev.code >= 4000) showError({ code: "disconnected", message: `close code ${ev.code}`, fatal: true });
    else showError({ code: "disconnected", message: "", fatal: true });
    this.setState("closed");
  }

  /** @param {SignalingState} state */
  setState(state) {
    if (this.state === state) return;
    // "error" sticks: a fatal error is followed by the server closing the socket.
    if (this.state === "error" && (state === "closed" || state === "reconnecting")) return;
    this.state = state;
    this.onChange();
  }

  /**
   * Send one message; false when there is no open socket to send it on.
   * @param {ClientMessage} obj
   */
  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** For tests: lose the connection as a phone losing its network would (no `leave`). */
  dropConnection() {
    try {
      this.ws?.close(4000, "dropped by the page");
    } catch {
      /* already closed */
    }
  }

  leave() {
    if (this.leaving) return;
    this.leaving = true;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.setState("closed");
    }
    this.send({ type: "leave" });
    try {
      this.ws?.close(1000);
    } catch {
      /* already closed */
    }
  }
}

/**
 * Start a page's connection: refuse plainly without WebRTC or without ?room=&token=, else join.
 * `render` draws the page once either way. Returns false when the page cannot start.
 * @param {Signaling} signaling
 * @param {{path: string, render: () => void}} options
 */
export function startPage(signaling, { path, render }) {
  let problem = null;
  if (typeof RTCPeerConnection !== "function") problem = { code: "no_webrtc", message: "", fatal: true };
  else if (!signaling.room || !signaling.token) problem = { code: "no_params", message: `${path}?room=…&token=…`, fatal: true };
  if (problem) {
    showError(problem);
    signaling.state = "error";
    render();
    return false;
  }
  render();
  signaling.start();
  return true;
}

