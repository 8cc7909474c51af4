// @ts-check
// Sky Classroom — the lesson library (/library?token=T): approved lessons by grade and subject, and
// for teachers "my lessons" (我的课程): a resumable upload (tus, vendor/tus.min.js) with progress,
// speed and time left, and each lesson's status as it is processed and reviewed.

import { $, h, expose } from "./dom.js";
import { GRADES, api, lessonItem, pagePlayer, play, showProblem } from "./lessons.js";
import { pageToken } from "./credential.js";

/** @typedef {import("./lessons.js").Lesson} Lesson */

const page = {
  role: "",
  uploading: /** @type {{sent: number, total: number, startedAt: number, id: string | null} | null} */ (null),
  uploaded: /** @type {string[]} */ ([]),
  listed: 0,
  mine: /** @type {Lesson[]} */ ([]),
  /** @type {string | null} */
  error: null,
};

const player = pagePlayer();

/** @param {unknown} e */
const showError = (e) => showProblem(page, e);

/** The role in the page's token (its payload is readable; the server checks the signature). */
function tokenRole() {
  try {
    const payload = JSON.parse(atob(pageToken().split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return String(payload.role || "");
  } catch {
    return "";
  }
}

function fillGrades() {
  for (const select of [$("grade", HTMLSelectElement), $("filter-grade", HTMLSelectElement)]) {
    for (const grade of GRADES) select.append(h("option", { value: grade, text: grade }));
  }
}

async function browse() {
  const q = new URLSearchParams({ status: "approved" });
  const grade = $("filter-grade", HTMLSelectElement).value;
  const subject = $("filter-subject", HTMLInputElement).value.trim();
  const words = $("filter-q", HTMLInputElement).value.trim();
  if (grade) q.set("grade", grade);
  if (subject) q.set("subject", subject);
  if (words) q.set("q", words);
  /** @type {Lesson[]} */
  const found = await api(`/api/lessons?${q}`);
  page.listed = found.length;
  $("lessons").replaceChildren(...found.map((lesson) => lessonItem(lesson, (l) => play(l, player))));
  $("empty").hidden = found.length > 0;
}

async function refreshMine() {
  page.mine = await api("/api/lessons?mine=true");
  $("my-lessons").replaceChildren(...page.mine.map((lesson) => lessonItem(lesson, (l) => play(l, player))));
  if (page.mine.some((l) => l.status === "processing")) setTimeout(() => refreshMine().catch(showError), 2000);
}

/** @param {number} bytes */
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/** @param {SubmitEvent} event */
function upload(event) {
  event.preventDefault();
  const file = $("file", HTMLInputElement).files?.[0];
  const tus = window.tus;
  if (!file || !tus) return;
  const metadata = {
    filename: file.name,
    filetype: file.type,
    title: $("title", HTMLInputElement).value.trim(),
    grade: $("grade", HTMLSelectElement).value,
    subject: $("subject", HTMLInputElement).value.trim(),
    unit: $("unit", HTMLInputElement).value.trim(),
    description: $("description", HTMLTextAreaElement).value.trim(),
  };
  const progress = $("upload-progress");
  const bar = $("upload-bar", HTMLProgressElement);
  const text = $("upload-text");
  progress.hidden = false;
  $("upload", HTMLButtonElement).disabled = true;
  const state = { sent: 0, total: file.size, startedAt: performance.now(), id: /** @type {string | null} */ (null) };
  page.uploading = state;
  const transfer = new tus.Upload(file, {
    endpoint: "/api/uploads",
    headers: { Authorization: `Bearer ${pageToken()}` },
    metadata,
    chunkSize: 8 * 1024 * 1024,
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000], // a link that drops: it goes on where it stopped
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      state.sent = sent;
      const seconds = (performance.now() - state.startedAt) / 1000;
      const speed = sent / Math.max(seconds, 0.001);
      const left = speed > 0 ? (total - sent) / speed : 0;
      bar.value = total ? (100 * sent) / total : 0;
      text.textContent = `${mb(sent)} / ${mb(total)} · ${mb(speed)}/s · 还剩 ${Math.ceil(left)} s left`;
    },
    onError(error) {
      $("upload", HTMLButtonElement).disabled = false;
      page.uploading = null;
      const response = /** @type {{originalResponse?: {getBody(): string} | null}} */ (error).originalResponse;
      let reason = error.message;
      try {
        if (response) reason = JSON.parse(response.getBody()).detail || reason;
      } catch {
        /* not JSON */
      }
      showError(`上传失败 Upload failed: ${reason}`);
    },
    onSuccess() {
      $("upload", HTMLButtonElement).disabled = false;
      state.id = (transfer.url || "").split("/").pop() || null;
      if (state.id) page.uploaded.push(state.id);
      page.uploading = null;
      text.textContent = `已上传 Uploaded ${mb(file.size)}: 处理中 processing…`;
      refreshMine().catch(showError);
    },
  });
  transfer.start();
}

async function start() {
  fillGrades();
  page.role = tokenRole();
  if (page.role === "teacher" || page.role === "admin") {
    $("mine").hidden = false;
    $("upload-form").addEventListener("submit", upload);
    await refreshMine();
  }
  for (const id of ["filter-grade", "filter-subject", "filter-q"]) {
    $(id).addEventListener("change", () => browse().catch(showError));
  }
  await browse();
}

expose({
  stats: () => ({ ...page, uploading: page.uploading && { ...page.uploading }, mine: page.mine.map((l) => ({ id: l.id, status: l.status })) }),
});
start().catch(showError);
