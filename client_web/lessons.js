// @ts-check
// Sky Classroom — what the library and review pages share: the API with the page's token, the
// grades, and a lesson as a list item.

import { pageToken } from "./credential.js";
import { $, h } from "./dom.js";

/**
 * @typedef {object} Lesson
 * @property {string} id
 * @property {string} title
 * @property {string} grade
 * @property {string} subject
 * @property {string} unit
 * @property {string} description
 * @property {string} teacher
 * @property {string} school
 * @property {string} source
 * @property {"processing" | "pending" | "approved" | "rejected" | "failed"} status
 * @property {number | null} progress
 * @property {number | null} duration_s
 * @property {"video" | "audio"} kind
 * @property {string | null} poster_url
 * @property {string | null} media_url
 * @property {string | null} error
 * @property {{reason: string, by: string} | null} review
 */

export const GRADES = [
  "一年级", "二年级", "三年级", "四年级", "五年级", "六年级",
  "初一", "初二", "初三", "高一", "高二", "高三",
];

/** @type {Record<Lesson["status"], string>} */
export const STATUS_TEXT = {
  processing: "处理中 Processing",
  pending: "待审核 Waiting for review",
  approved: "已通过 Approved",
  rejected: "未通过 Rejected",
  failed: "处理失败 Failed",
};

export class ApiError extends Error {
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
 * A JSON API call with the page's token.
 * @param {string} url
 * @param {{method?: string, body?: unknown}} [options]
 * @returns {Promise<any>}
 */
export async function api(url, { method = "GET", body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json", Authorization: `Bearer ${pageToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try {
      const answer = await response.json();
      detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
    } catch {
      /* not JSON */
    }
    throw new ApiError(detail, response.status);
  }
  return response.json();
}

/** @param {number | null} seconds */
export function minutes(seconds) {
  if (seconds === null) return "—";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * A lesson as a list item: poster, title, grade and subject, teacher, length, status.
 * @param {Lesson} lesson
 * @param {(lesson: Lesson) => void} [onPlay]
 * @param {...Node} extra more elements at the end (buttons)
 */
export function lessonItem(lesson, onPlay, ...extra) {
  const poster = lesson.poster_url ? h("img", { class: "poster", src: lesson.poster_url, alt: "" }) : h("div", { class: "poster" });
  const status = h("span", { class: `status-badge status-${lesson.status}`, text: STATUS_TEXT[lesson.status] || lesson.status });
  if (lesson.status === "processing" && lesson.progress !== null) status.textContent += ` ${Math.round(lesson.progress)}%`;
  const title = onPlay && lesson.media_url
    ? h("button", { class: "link", type: "button", text: lesson.title, onclick: () => onPlay(lesson) })
    : h("span", { text: lesson.title });
  const reason = lesson.status === "rejected" && lesson.review ? h("p", { class: "reason", text: `原因 Reason: ${lesson.review.reason}` }) : null;
  const error = lesson.status === "failed" && lesson.error ? h("p", { class: "reason", text: lesson.error }) : null;
  return h(
    "li",
    { class: "lesson", dataset: { id: lesson.id, status: lesson.status } },
    poster,
    h("div", { class: "lesson-info" },
      h("strong", {}, title),
      h("span", { text: ` ${lesson.grade} · ${lesson.subject}${lesson.unit ? ` · ${lesson.unit}` : ""}` }),
      h("span", { class: "teacher", text: ` · ${lesson.teacher} · ${minutes(lesson.duration_s)}` }),
      status, reason, error),
    ...extra,
  );
}

/** The page's player: #player with its title, a video and an audio element. */
export function pagePlayer() {
  return {
    section: $("player"),
    title: $("player-title"),
    video: $("player-video", HTMLVideoElement),
    audio: $("player-audio", HTMLAudioElement),
  };
}

/**
 * Show a failure in #error (and keep it in ``page.error`` for the tests).
 * @param {{error: string | null}} page
 * @param {unknown} e
 */
export function showProblem(page, e) {
  page.error = String((e instanceof Error && e.message) || e);
  const box = $("error");
  box.hidden = false;
  box.textContent = page.error;
}

/**
 * Play ``lesson`` in the page's player (video or audio).
 * @param {Lesson} lesson
 * @param {{section: HTMLElement, title: HTMLElement, video: HTMLVideoElement, audio: HTMLAudioElement}} player
 */
export function play(lesson, player) {
  player.section.hidden = false;
  player.title.textContent = lesson.title;
  const media = lesson.kind === "audio" ? player.audio : player.video;
  const other = lesson.kind === "audio" ? player.video : player.audio;
  other.pause();
  other.hidden = true;
  media.hidden = false;
  if (lesson.kind !== "audio" && lesson.poster_url) player.video.poster = lesson.poster_url;
  media.src = lesson.media_url || "";
}
