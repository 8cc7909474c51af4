// @ts-check
// Sky Classroom — replay page (点播回看).
//
// /replay/{id}      one recorded lesson: the video (seekable), its title, teacher, date,
//                   duration and status, then the same class's other recorded lessons.
// /replay?room=R    the class's recorded lessons, newest first, as links.
// /replay           every recorded lesson.
//
// Reads GET /api/recordings/{id} and GET /api/recordings?room=R; the media is
// /recordings/{id}.webm, served with HTTP range requests so the browser can seek.

import { pageToken } from "./credential.js";
import { $, expose, video as videoEl } from "./dom.js";

/**
 * A recorded lesson as the API gives it (GET /api/recordings/{id}).
 * @typedef {object} Recording
 * @property {string} id
 * @property {string} [room]
 * @property {string} [title]
 * @property {string} [teacher]
 * @property {string} [start] ISO date and time
 * @property {number | null} [duration] seconds
 * @property {string} [status] complete, recording, interrupted, failed
 * @property {string} url
 * @property {string} [replay] the page's address
 */

/** @type {Record<string, string>} */
const STATUS_TEXT = {
  complete: "完整 Complete",
  recording: "录制中 Recording now",
  interrupted: "中断（可播放至中断处） Interrupted — plays up to the break",
  failed: "失败 Failed",
};

const video = videoEl("video");
const errorBox = $("error");

const page = {
  /** @type {"player" | "list" | null} */
  mode: null,
  /** @type {string | null} */
  id: null,
  /** @type {string | null} */
  room: null,
  /** @type {Recording | null} the API's record for /replay/{id} */
  recording: null,
  listed: 0, // recordings listed
  loaded: false, // the API answered (or failed)
  /** @type {string | null} */
  error: null,
  seeks: 0,
};

function stats() {
  return {
    mode: page.mode,
    id: page.id,
    room: page.room,
    loaded: page.loaded,
    error: page.error,
    status: page.recording ? page.recording.status : null,
    duration: Number.isFinite(video.duration) ? video.duration : null,
    apiDuration: page.recording ? page.recording.duration : null,
    currentTime: video.currentTime,
    readyState: video.readyState,
    paused: video.paused,
    seeking: video.seeking,
    seeks: page.seeks,
    videoWidth: video.videoWidth,
    videoHeight: video.videoHeight,
    listed: page.listed,
  };
}

expose({ stats });

// --- formatting ------------------------------------------------------------------------------

/** @param {number} n */
const pad = (n) => String(n).padStart(2, "0");

/**
 * "2025-11-29 20:13" in the viewer's time zone; "—" when unknown.
 * @param {string | null | undefined} iso
 */
function formatDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * "20:05" or "1:02:03"; "—" when unknown.
 * @param {number | null | undefined} seconds
 */
function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "—";
  const total = Math.round(Number(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** @param {string | undefined} status */
function statusBadge(status) {
  const el = document.createElement("span");
  el.className = "status-badge";
  el.dataset.status = status || "";
  el.textContent = STATUS_TEXT[status || ""] || status || "—";
  return el;
}

/**
 * @param {string} title
 * @param {string} detail
 */
function showProblem(title, detail) {
  page.error = title;
  errorBox.replaceChildren();
  const t = document.createElement("p");
  t.className = "error-title";
  t.textContent = title;
  errorBox.append(t);
  if (detail) {
    const d = document.createElement("p");
    d.className = "error-detail";
    d.textContent = detail;
    errorBox.append(d);
  }
  errorBox.hidden = false;
}

// --- data ----------------------------------------------------------------------------------

/** An HTTP error, with its status. */
class HttpError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * @param {string} url
 * @returns {Promise<any>}
 */
async function getJSON(url) {
  // The lessons are the class's own: the page's token (from the pupil's or teacher's page, or
  // ?token=) goes with every request.
  const token = pageToken();
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { headers });
  if (!response.ok) throw new HttpError(`${url}: HTTP ${response.status}`, response.status);
  return response.json();
}

/** @param {unknown} e */
const describe = (e) => String((e instanceof Error && e.message) || e);

function route() {
  const q = new URLSearchParams(location.search);
  const m = location.pathname.match(/^\/replay\/([^/]+)\/?$/);
  let id = null;
  if (m) {
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = m[1];
    }
  }
  return { id: id || (q.get("id") || "").trim() || null, room: (q.get("room") || "").trim() || null };
}

// --- one lesson ----------------------------------------------------------------------------

/** @param {string} id */
async function showRecording(id) {
  page.mode = "player";
  page.id = id;
  /** @type {Recording} */
  let r;
  try {
    r = await getJSON(`/api/recordings/${encodeURIComponent(id)}`);
  } catch (e) {
    page.loaded = true;
    if (e instanceof HttpError && e.status === 404) showProblem("找不到这节录播课 This recorded lesson was not found.", `(${id})`);
    else showProblem("无法读取录播课 Cannot load the recorded lesson.", describe(e));
    return;
  }
  page.recording = r;
  page.room = r.room || null;
  const title = r.title || r.room || r.id;
  document.title = `${title} · 点播回看 Replay · 天空课堂 Sky Classroom`;
  $("room").textContent = r.room || "—";
  $("title").textContent = title;
  $("teacher").textContent = r.teacher || "—";
  $("date").textContent = formatDate(r.start);
  $("duration").textContent = formatDuration(r.duration);
  $("status").replaceWith(Object.assign(statusBadge(r.status), { id: "status" }));
  $("player").hidden = false;
  if (r.status === "failed") {
    showProblem("这节课录制失败，无法播放 This lesson's recording failed and cannot be played.", "");
  } else {
    video.src = r.url;
  }
  page.loaded = true;
  if (r.room) await showList(r.room, r.id);
}

video.addEventListener("loadedmetadata", () => {
  // A recording still being written has no duration in the API: show the file's, when known.
  if ((page.recording?.duration ?? null) === null && Number.isFinite(video.duration)) {
    $("duration").textContent = formatDuration(video.duration);
  }
});
video.addEventListener("seeked", () => {
  page.seeks += 1;
});
video.addEventListener("error", () => {
  if (page.mode !== "player") return;
  const err = video.error;
  showProblem("视频无法播放 The video cannot be played.", err ? `${err.code} ${err.message || ""}`.trim() : "");
});

// --- the class's lessons -------------------------------------------------------------------

/**
 * @param {string | null} room
 * @param {string | null} [exceptId]
 */
async function showList(room, exceptId = null) {
  const section = $("list-section");
  const list = $("list");
  /** @type {Recording[]} */
  let recordings;
  try {
    recordings = await getJSON(room ? `/api/recordings?room=${encodeURIComponent(room)}` : "/api/recordings");
  } catch (e) {
    if (page.mode === "list") showProblem("无法读取录播课列表 Cannot load the recorded lessons.", describe(e));
    page.loaded = true;
    return;
  }
  const shown = (Array.isArray(recordings) ? recordings : []).filter((r) => r && r.id !== exceptId);
  list.replaceChildren();
  for (const r of shown) {
    const li = document.createElement("li");
    li.dataset.id = r.id;
    const title = r.title || r.room || r.id;
    let name;
    if (r.status === "failed") {
      name = document.createElement("span"); // nothing to play
    } else {
      name = document.createElement("a");
      name.href = r.replay || `/replay/${encodeURIComponent(r.id)}`;
    }
    name.textContent = title;
    const meta = document.createElement("span");
    meta.className = "meta";
    const parts = [r.teacher, formatDate(r.start), formatDuration(r.duration)];
    if (!room && r.room) parts.unshift(`教室 Room ${r.room}`);
    meta.textContent = parts.filter((x) => x && x !== "—").join(" · ");
    li.append(name, meta, statusBadge(r.status));
    list.append(li);
  }
  page.listed = shown.length;
  $("list-empty").hidden = shown.length > 0;
  section.hidden = false;
  page.loaded = true;
}

async function main() {
  const { id, room } = route();
  if (id) {
    await showRecording(id);
    return;
  }
  page.mode = "list";
  page.room = room;
  $("room").textContent = room || "全部 All";
  $("list-title-main").hidden = false;
  $("list-title").textContent = room
    ? `教室 ${room} 的录播课 Recorded lessons of class ${room}`
    : "全部录播课 All recorded lessons";
  if (room) document.title = `${room} · 点播回看 Replay · 天空课堂 Sky Classroom`;
  await showList(room);
}

main();
