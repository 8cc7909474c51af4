// @ts-check
// Sky Classroom — the small DOM helpers of every page: elements by id, an element builder, the
// connection state label, the error box and the lasting notice. No HTML strings anywhere: text goes
// in as textContent, elements as elements.

/** @typedef {import("./protocol").ErrorOut} ErrorOut */

/**
 * The element with this id; a page without it is a bug. The type is the caller's to say:
 * `$(id, HTMLVideoElement)` checks it, `$(id)` is any HTMLElement.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {new () => T} [kind]
 * @returns {T}
 */
export function $(id, kind) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  if (kind && !(el instanceof kind)) throw new Error(`#${id} is not a ${kind.name}`);
  return /** @type {T} */ (el);
}

/** @param {string} id */
export const video = (id) => $(id, HTMLVideoElement);
/** @param {string} id */
export const button = (id) => $(id, HTMLButtonElement);
/** @param {string} id */
export const input = (id) => $(id, HTMLInputElement);

/**
 * @typedef {Record<string, unknown> & {
 *   class?: string, text?: string, dataset?: Record<string, string | number>, style?: string,
 * }} Attrs
 */

/**
 * A small element builder: h("li", {class: "x", dataset: {id}}, "text", child, …).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = String(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/**
 * "14:05" for epoch seconds.
 * @param {number} at
 */
export function clock(at) {
  const d = new Date(at * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** @type {Record<string, string>} */
export const ROLE_LABELS = {
  teacher: "老师 Teacher",
  student: "学生 Student",
  inspector: "督导 Inspector",
  admin: "管理员 Admin",
};

/** The letters of a poll's answers. */
export const LETTERS = "ABCDEF";

// --- connection state label -----------------------------------------------------------

/** @type {Record<string, string>} */
const STATE_LABELS = {
  connecting: "正在连接… Connecting…",
  joined: "已进入教室 Joined",
  connected: "已连接 Connected",
  reconnecting: "正在重新连接… Reconnecting…",
  closed: "连接已断开 Disconnected",
  error: "出错 Error",
};

/** @param {string} state */
export function showState(state) {
  const el = document.getElementById("state");
  if (!el) return;
  el.textContent = STATE_LABELS[state] || state;
  el.dataset.state = state;
}

// --- errors ------------------------------------------------------------------------------

// Plain words for the teacher and the students; the server's own message follows them.
/** @type {Record<string, string>} */
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
  seat_taken: "您已在另一台设备上进入本节课，请先关闭那里 You are in this lesson on another device — close it there first.",
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
 * @param {ErrorOut} err
 */
export function showError(err) {
  const box = document.getElementById("error");
  if (!box) return;
  const code = err.code || "error";
  box.replaceChildren();
  box.append(h("p", { class: "error-title", text: ERROR_TEXT[code] || "出错了 Something went wrong." }));
  if (err.message) box.append(h("p", { class: "error-detail", text: err.message }));
  box.append(h("p", { class: "error-code", text: `(${code})` }));
  if (err.fatal || code === "disconnected" || code === "no_server") {
    const reload = h("button", { type: "button", class: "btn btn-small", text: "刷新页面 Reload" });
    reload.addEventListener("click", () => location.reload());
    box.append(reload);
  } else {
    const dismiss = h("button", { type: "button", class: "btn btn-small btn-plain", text: "关闭 Dismiss" });
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

/** The code of the error shown now, if any. */
export function shownError() {
  return document.getElementById("error")?.dataset.code;
}

// --- the lasting notice ----------------------------------------------------------------

/** @type {Record<string, string>} */
const NOTICES = {
  removed: "老师已将您移出本节课。The teacher removed you from this lesson.",
  lesson_ended: "本节课已结束，谢谢！The lesson has ended — thank you!",
  to_hls: "您的网络无法直接连接直播，已改用普通网页方式观看（延迟稍长）。Your network blocks the live connection: watching over plain HTTP instead (a few seconds behind).",
  to_webrtc: "直播连接已恢复。The live connection works again: back to the live picture.",
};

/**
 * The lasting message at the top of the page (removed, lesson ended).
 * @param {string} kind
 * @param {string} [detail]
 */
export function showNotice(kind, detail = "") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.replaceChildren(h("p", { class: "notice-title", text: NOTICES[kind] || kind }));
  if (detail) box.append(h("p", { class: "notice-detail", text: detail }));
  box.dataset.kind = kind;
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

/**
 * Publish window.skyclass (what the tests read); `stats` must be synchronous.
 * @param {Record<string, unknown>} api
 */
export function expose(api) {
  window.skyclass = Object.freeze({ ...api });
}
