// Sky Classroom — code shared by the teacher page (teach.js) and the student page (learn.js).
//
// Plain ES module, no build step. It speaks the signaling protocol of docs/protocol.md:
// one websocket at /ws, JSON text frames, `join` first, `ping` every 20 s. A connection that
// drops (without `removed`, `lesson_ended` or a fatal error) comes back by itself with the same
// token; within 30 s the server resumes the session (`joined.resumed`).

export const PING_INTERVAL_MS = 20_000;
export const PONG_TIMEOUT_MS = 10_000; // no message at all this long after a ping: the connection is dead
export const STATS_INTERVAL_MS = 250;
export const RECONNECT_MIN_MS = 500; // then 1 s, 2 s, 4 s, 5 s, 5 s, …
export const RECONNECT_MAX_MS = 5000;

// --- small DOM helpers -------------------------------------------------------------------

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** room and token from the page address (?room=R&token=T). */
export function pageParams() {
  const q = new URLSearchParams(location.search);
  // delivery: "hls" asks for the HTTP stream (networks that block WebRTC); the server may choose it anyway
  const delivery = ["webrtc", "hls"].includes(q.get("delivery")) ? q.get("delivery") : "auto";
  return { room: (q.get("room") || "").trim(), token: (q.get("token") || "").trim(), delivery };
}

// --- connection state label -----------------------------------------------------------

const STATE_LABELS = {
  connecting: "正在连接… Connecting…",
  joined: "已进入教室 Joined",
  connected: "已连接 Connected",
  reconnecting: "正在重新连接… Reconnecting…",
  closed: "连接已断开 Disconnected",
  error: "出错 Error",
};

export function showState(state) {
  const el = document.getElementById("state");
  if (!el) return;
  el.textContent = STATE_LABELS[state] || state;
  el.dataset.state = state;
}

// --- errors ------------------------------------------------------------------------------

// Plain words for the teacher and the students; the server's own message follows them.
const ERROR_TEXT = {
  bad_json: "服务器无法读取消息 The server could not read a message.",
  bad_message: "服务器拒绝了一条消息 The server rejected a message.",
  too_large: "消息太大 A message was too large.",
  binary_frame: "消息格式错误 Wrong message format.",
  not_joined: "尚未进入教室 Not in the classroom yet.",
  already_joined: "已经进入教室 Already in the classroom.",
  join_timeout: "进入教室超时，请刷新页面 Joining took too long — please reload the page.",
  invalid_token: "链接无效，请向老师或学校索取新的链接 This link is not valid — ask for a new link.",
  token_expired: "链接已过期，请向老师或学校索取新的链接 This link has expired — ask for a new link.",
  wrong_room: "链接与教室不符 This link is for another classroom.",
  forbidden: "没有权限执行此操作 You are not allowed to do that.",
  bad_sdp: "浏览器与服务器的媒体设置不兼容 The browser's media setup was not accepted.",
  bad_state: "操作顺序有误，请重试 That did not fit right now — please try again.",
  rate_limited: "操作太频繁 Too many messages — slow down.",
  already_answered: "这次投票您已经回答过了 You already answered this poll.",
  removed: "老师已将您移出本节课 The teacher removed you from this lesson.",
  server_full: "服务器已满，请稍后再试 The server is full — please try again later.",
  server_error: "服务器内部错误 Something went wrong on the server.",
  // Client-side problems, same display.
  no_params: "链接缺少 room 或 token The link is missing room or token.",
  no_server: "无法连接服务器 Cannot reach the server.",
  disconnected: "与服务器的连接已断开，请刷新页面 The connection to the server was lost — reload the page.",
  media_failed: "媒体连接失败 The media connection failed.",
  no_camera: "无法使用摄像头或麦克风 Cannot use the camera or microphone.",
  no_screen: "无法共享屏幕 Cannot share the screen.",
  invitation_lapsed: "邀请已失效 The invitation is no longer open.",
  no_webrtc: "此浏览器不支持视频直播 This browser cannot play live video (no WebRTC).",
  wrong_page: "此链接不适用于本页面 This link is not for this page.",
};

/**
 * Show an error plainly in #error. `err` is the server's error message
 * ({code, message, fatal}) or the same shape made up on the client.
 */
export function showError(err) {
  const box = document.getElementById("error");
  if (!box) return;
  const code = err.code || "error";
  box.replaceChildren();
  const title = document.createElement("p");
  title.className = "error-title";
  title.textContent = ERROR_TEXT[code] || "出错了 Something went wrong.";
  box.append(title);
  if (err.message) {
    const detail = document.createElement("p");
    detail.className = "error-detail";
    detail.textContent = err.message;
    box.append(detail);
  }
  const codeLine = document.createElement("p");
  codeLine.className = "error-code";
  codeLine.textContent = `(${code})`;
  box.append(codeLine);
  if (err.fatal || code === "disconnected" || code === "no_server") {
    const reload = document.createElement("button");
    reload.type = "button";
    reload.className = "btn btn-small";
    reload.textContent = "刷新页面 Reload";
    reload.addEventListener("click", () => location.reload());
    box.append(reload);
  } else {
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "btn btn-small btn-plain";
    dismiss.textContent = "关闭 Dismiss";
    dismiss.addEventListener("click", clearError);
    box.append(dismiss);
  }
  box.dataset.code = code;
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById("error");
  if (!box) return;
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.code;
}

// --- classroom widgets shared by both pages ----------------------------------------------

/** A small element builder: h("li", {class: "x", dataset: {id}}, "text", child, …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** "14:05" for epoch seconds. */
export function clock(at) {
  const d = new Date(at * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

export const ROLE_LABELS = {
  teacher: "老师 Teacher",
  student: "学生 Student",
  inspector: "督导 Inspector",
  admin: "管理员 Admin",
};

const NOTICES = {
  removed: "老师已将您移出本节课。The teacher removed you from this lesson.",
  lesson_ended: "本节课已结束，谢谢！The lesson has ended — thank you!",
};

/** The lasting message at the top of the page (removed, lesson ended). */
export function showNotice(kind, detail = "") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.replaceChildren(h("p", { class: "notice-title", text: NOTICES[kind] || kind }));
  if (detail) box.append(h("p", { class: "notice-detail", text: detail }));
  box.dataset.kind = kind;
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

const CHAT_KEEP = 200; // messages kept on the page
const CHAT_ERRORS = {
  rate_limited: "发送太快，这条消息没有发出，请稍等几秒再发。Too fast — this message was not sent. Wait a few seconds.",
  bad_message: "消息没有发出（最多 500 字）。The message was not sent (500 characters at most).",
  offline: "现在没有连接，消息没有发出。Not connected — the message was not sent.",
};

/**
 * The chat: a list, and an input whose Enter sends `chat {text}`.
 * Elements: #chat-list, #chat-form, #chat-input, #chat-status, #chat-empty.
 */
export class ChatBox {
  constructor(signaling) {
    this.signaling = signaling;
    this.list = $("chat-list");
    this.form = $("chat-form");
    this.input = $("chat-input");
    this.status = $("chat-status");
    this.empty = document.getElementById("chat-empty");
    this.received = 0;
    this.selfId = null;
    this.lastSent = null; // {text, at}: restored to the input when the server drops it
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (!this.signaling.send({ type: "chat", text: text.slice(0, 500) })) {
      this.problem("offline");
      return;
    }
    this.lastSent = { text, at: performance.now() };
    this.input.value = "";
    this.status.hidden = true;
  }

  /** A server error that belongs to the chat: shown under the input. True when taken. */
  takeError(msg) {
    const recent = this.lastSent && performance.now() - this.lastSent.at < 5000;
    if (!recent || !(msg.code in CHAT_ERRORS)) return false;
    // Several sent at once may be refused: each refusal is the chat's, the text comes back once.
    if (!this.input.value && !this.lastSent.restored) this.input.value = this.lastSent.text;
    this.lastSent.restored = true;
    this.problem(msg.code);
    return true;
  }

  problem(code) {
    this.status.textContent = CHAT_ERRORS[code];
    this.status.dataset.code = code;
    this.status.hidden = false;
  }

  add(msg) {
    this.received += 1;
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const mine = this.selfId && msg.from_id === this.selfId;
    const who = h(
      "span",
      { class: "chat-who" },
      h("span", { class: "chat-name", text: msg.name || "?" }),
      msg.role === "teacher" ? h("span", { class: "chat-role", text: "老师 Teacher" }) : null,
      mine ? h("span", { class: "chat-role", text: "我 Me" }) : null,
      h("time", { class: "chat-time", text: clock(msg.at || Date.now() / 1000) }),
    );
    const item = h("li", { class: `chat-msg role-${msg.role}${mine ? " mine" : ""}` }, who, h("p", { class: "chat-text", text: msg.text }));
    this.list.append(item);
    while (this.list.children.length > CHAT_KEEP) this.list.firstElementChild.remove();
    if (this.empty) this.empty.hidden = true;
    if (nearBottom || mine) this.list.scrollTop = this.list.scrollHeight;
  }

  setEnabled(on) {
    this.input.disabled = !on;
    for (const b of this.form.querySelectorAll("button")) b.disabled = !on;
  }
}

// --- signaling connection ----------------------------------------------------------------

// Close codes that follow a refusal (bad token, wrong room, removed, …): never reconnect after them.
const REFUSED_CLOSE = (code) => code >= 4400 && code < 4500;
// Close codes that ask for a reconnect even before the first `joined`: the room moved to another
// node (1012), cannot be reached for a moment (1013), or the server is full (4503; it says when).
const RETRY_CLOSE = (code) => code === 1012 || code === 1013 || code === 4503;
const RETRY_ERRORS = new Set(["unavailable", "server_full"]);

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
  constructor({ room, token, delivery = "auto", onMessage, onChange, onError }) {
    this.room = room;
    this.token = token;
    this.delivery = delivery;
    this.onMessage = onMessage || (() => {});
    this.onChange = onChange || (() => {});
    this.onError = onError || (() => false);
    this.state = "connecting";
    this.joined = null; // the latest `joined` message
    this.fatal = null; // the fatal error, if any
    this.ended = null; // "removed" or "lesson_ended": the server let us go for good
    this.ws = null;
    this.pingTimer = null;
    this.retryTimer = null;
    this.leaving = false;
    this.epoch = 0; // websockets opened so far; a page can tell what came on the current one
    this.everJoined = false;
    this.attempt = 0; // reconnect attempts since the last `joined`
    this.reconnects = 0; // `joined` again after a dropped connection
    this.retryAfterMs = 0; // the server asked us to wait this long before the next attempt
  }

  get url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
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
    let lastIn = 0; // performance.now() of the last message
    let pingAt = 0; // … and of the last ping
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.epoch += 1;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      opened = true;
      const join = { type: "join", room: this.room, token: this.token };
      if (this.delivery !== "auto") join.delivery = this.delivery;
      this.send(join);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (ws !== this.ws) return;
        if (pingAt && lastIn < pingAt && performance.now() - pingAt > PONG_TIMEOUT_MS) {
          // Not even a pong since the last ping: the network is gone without the socket noticing.
          console.warn("skyclass: no answer from the server; reconnecting");
          this.ws = null;
          try {
            ws.close();
          } catch {
            /* already closed */
          }
          this.closed({ code: 1006 }, true);
          return;
        }
        pingAt = performance.now();
        this.send({ type: "ping" });
      }, PING_INTERVAL_MS);
    });
    ws.addEventListener("message", (ev) => {
      if (ws !== this.ws) return;
      lastIn = performance.now();
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
        if (this.everJoined) this.reconnects += 1;
        this.everJoined = true;
        this.attempt = 0;
        if (document.getElementById("error")?.dataset.code === "server_full") clearError();
        this.setState("joined");
      } else if (msg.type === "removed" || msg.type === "lesson_ended") {
        this.ended = msg.type; // the server closes the socket next; no coming back
      } else if (msg.type === "error") {
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

  /** The current socket is gone: reconnect, or settle on "closed". */
  closed(ev, opened) {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.state === "error") {
      this.onChange();
      return;
    }
    if (this.leaving || this.ended) {
      this.setState("closed");
      return;
    }
    if ((this.everJoined || RETRY_CLOSE(ev.code)) && !REFUSED_CLOSE(ev.code)) {
      const delay = Math.max(Math.min(RECONNECT_MIN_MS * 2 ** this.attempt, RECONNECT_MAX_MS), this.retryAfterMs);
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

  setState(state) {
    if (this.state === state) return;
    // "error" sticks: a fatal error is followed by the server closing the socket.
    if (this.state === "error" && (state === "closed" || state === "reconnecting")) return;
    this.state = state;
    this.onChange();
  }

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

// --- WebRTC helpers ----------------------------------------------------------------------

export function newPeerConnection() {
  // No STUN/TURN: the server is reached directly (its candidates are in its SDP).
  return new RTCPeerConnection({ iceServers: [] });
}

/**
 * Trickle the browser's ICE candidates as `ice {target, candidate, sdpMid, sdpMLineIndex}`.
 * Candidates are held back until `ready()` is called, i.e. until the offer/answer they
 * belong to has been sent, so the server never sees `ice` before the description.
 */
export function trickleIce(pc, signaling, target) {
  let ready = false;
  const held = [];
  const sendOne = (c) => {
    const j = c ? c.toJSON() : null;
    signaling.send({
      type: "ice",
      target,
      candidate: j ? j.candidate : null,
      sdpMid: j ? (j.sdpMid ?? null) : null,
      sdpMLineIndex: j ? (j.sdpMLineIndex ?? null) : null,
    });
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

// --- the subscription's slots ----------------------------------------------------------

/**
 * What each m-line of the server's subscription offer carries, in order (docs/protocol.md):
 * the teacher's microphone and camera, the teacher's shared screen, the student on stage.
 * The offer names them in `slots`; this is the order to assume when it does not.
 */
export const DEFAULT_SLOTS = ["audio", "video", "screen", "stage_audio", "stage_video"];

/**
 * The slot of one of a subscription's transceivers. The browser answers the server's offer
 * and adds no transceivers of its own, so the transceivers come in m-line order.
 */
export function slotOf(pc, transceiver, slots) {
  const names = Array.isArray(slots) && slots.length ? slots : DEFAULT_SLOTS;
  const i = pc.getTransceivers().indexOf(transceiver);
  return i >= 0 && i < names.length ? names[i] : null;
}

/** The inbound-rtp report of each slot that has received something: {slot: report}. */
export function inboundBySlot(report, pc, slots) {
  const byMid = new Map();
  const byTrack = new Map();
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp") continue;
    if (s.mid !== undefined && s.mid !== null) byMid.set(String(s.mid), s);
    if (s.trackIdentifier) byTrack.set(s.trackIdentifier, s);
  }
  const out = {};
  for (const t of pc.getTransceivers()) {
    const slot = slotOf(pc, t, slots);
    if (!slot) continue;
    const s = (t.mid !== null && byMid.get(String(t.mid))) || byTrack.get(t.receiver.track.id);
    if (s) out[slot] = s;
  }
  return out;
}

/** Put `track` in `stream` in place of any other track of its kind. */
export function replaceTrack(stream, track) {
  for (const t of stream.getTracks()) if (t.kind === track.kind && t !== track) stream.removeTrack(t);
  if (!stream.getTracks().includes(track)) stream.addTrack(track);
}

/** Poll `fn` every `ms` milliseconds; never runs two at once. */
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

/** Find the first report of `type` and `kind` in an RTCStatsReport. */
export function findStat(report, type, kind) {
  for (const s of report.values()) {
    if (s.type === type && (s.kind || s.mediaType) === kind) return s;
  }
  return null;
}

export function hasWebRTC() {
  return typeof RTCPeerConnection === "function";
}

/** Publish window.skyclass; `stats` must be synchronous. */
export function expose(api) {
  window.skyclass = Object.freeze({ ...api });
}

// --- page start and shared stats ---------------------------------------------------------

/**
 * Connect a page: make `page.signaling` and `page.chat`, refuse plainly without WebRTC or without
 * ?room=&token=, then join. Returns false when the page cannot start.
 */
export function startPage(page, { path, roomEl, onMessage, onChange, onError, render }) {
  const { room, token, delivery } = pageParams();
  page.signaling = new Signaling({ room, token, delivery, onMessage, onChange, onError });
  page.chat = new ChatBox(page.signaling);
  roomEl.textContent = room || "—";
  let problem = null;
  if (!hasWebRTC()) problem = { code: "no_webrtc", message: "", fatal: true };
  else if (!room || !token) problem = { code: "no_params", message: `${path}?room=…&token=…`, fatal: true };
  if (problem) {
    showError(problem);
    page.signaling.state = "error";
    render();
    return false;
  }
  render();
  page.signaling.start();
  return true;
}

/** The student on stage as both pages report it in stats(), or null. */
export function stageStats(page, stageVideo) {
  if (!page.stage) return null;
  return {
    participant_id: page.stage.participant_id,
    name: page.stage.name,
    muted: page.stage.muted,
    framesDecoded: page.stageFrames,
    videoWidth: stageVideo.videoWidth,
    audioPacketsReceived: page.stageAudioPackets,
  };
}
