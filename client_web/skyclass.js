// Sky Classroom — code shared by the teacher page (teach.js) and the student page (learn.js).
//
// Plain ES module, no build step. It speaks the signaling protocol of docs/protocol.md:
// one websocket at /ws, JSON text frames, `join` first, `ping` every 20 s.

export const PING_INTERVAL_MS = 20_000;
export const STATS_INTERVAL_MS = 250;

// --- small DOM helpers -------------------------------------------------------------------

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** room and token from the page address (?room=R&token=T). */
export function pageParams() {
  const q = new URLSearchParams(location.search);
  return { room: (q.get("room") || "").trim(), token: (q.get("token") || "").trim() };
}

// --- connection state label -----------------------------------------------------------

const STATE_LABELS = {
  connecting: "正在连接… Connecting…",
  joined: "已进入教室 Joined",
  connected: "已连接 Connected",
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
  server_full: "服务器已满，请稍后再试 The server is full — please try again later.",
  server_error: "服务器内部错误 Something went wrong on the server.",
  // Client-side problems, same display.
  no_params: "链接缺少 room 或 token The link is missing room or token.",
  no_server: "无法连接服务器 Cannot reach the server.",
  disconnected: "与服务器的连接已断开，请刷新页面 The connection to the server was lost — reload the page.",
  media_failed: "媒体连接失败 The media connection failed.",
  no_camera: "无法使用摄像头或麦克风 Cannot use the camera or microphone.",
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

// --- signaling connection ----------------------------------------------------------------

/**
 * One websocket to /ws. Sends `join` on open, pings every 20 s, shows server errors.
 *
 * `onMessage(msg)` gets every message but `pong`; `onChange()` is called whenever
 * `state` changes: "connecting" → "joined" → "closed" (or "error" after a fatal error).
 */
export class Signaling {
  constructor({ room, token, onMessage, onChange }) {
    this.room = room;
    this.token = token;
    this.onMessage = onMessage || (() => {});
    this.onChange = onChange || (() => {});
    this.state = "connecting";
    this.joined = null; // the `joined` message
    this.fatal = null; // the fatal error, if any
    this.ws = null;
    this.pingTimer = null;
    this.leaving = false;
  }

  get url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  start() {
    let opened = false;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      opened = true;
      this.send({ type: "join", room: this.room, token: this.token });
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
    });
    ws.addEventListener("message", (ev) => {
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
        this.setState("joined");
      } else if (msg.type === "error") {
        console.warn("skyclass: server error", msg);
        if (msg.fatal) {
          this.fatal = msg;
          this.setState("error");
        }
        showError(msg);
      }
      try {
        this.onMessage(msg);
      } catch (e) {
        console.error("skyclass: handling", msg.type, e);
      }
    });
    ws.addEventListener("close", (ev) => {
      clearInterval(this.pingTimer);
      this.pingTimer = null;
      if (this.state === "error") {
        this.onChange();
        return;
      }
      if (!this.leaving) {
        if (!opened) showError({ code: "no_server", message: "", fatal: true });
        else if (ev.code >= 4000) showError({ code: "disconnected", message: `close code ${ev.code}`, fatal: true });
        else showError({ code: "disconnected", message: "", fatal: true });
      }
      this.setState("closed");
    });
    // pagehide: say goodbye so the server frees our seat at once.
    window.addEventListener("pagehide", () => this.leave());
  }

  setState(state) {
    if (this.state === state) return;
    // "error" sticks: a fatal error is followed by the server closing the socket.
    if (this.state === "error" && state === "closed") return;
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

  leave() {
    if (this.leaving) return;
    this.leaving = true;
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
