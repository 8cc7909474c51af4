// @ts-check
// Sky Classroom — the control room (/city?token=<admin token>): every class of the admin's scope on
// every node, worst first (GET /api/city, a page of PAGE_SIZE rows at a time, so 5,000 classes cost
// the browser one page), tiles per school and grade, filters, refreshed every REFRESH_MS; "巡课
// Inspect" opens the class in a new tab with an inspector's token minted for it (unseen by the
// class); today's participation per school and grade (GET /api/reports/attendance) as a chart, and
// the day's attendance as Excel or CSV.

import { $, h, expose } from "./dom.js";
import { api, showProblem } from "./lessons.js";
import { pageToken } from "./credential.js";
import { ParticipationChart } from "./city-chart.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 10_000;
const PARTICIPATION_EVERY = 6; // refreshes: once a minute
const TILES_SHOWN = 60; // the worst tiles; the filters narrow to the rest

/**
 * @typedef {object} CityRoom
 * @property {string} room
 * @property {string} class_name
 * @property {string} school
 * @property {string} grade
 * @property {"live" | "recorded" | "fallback" | "idle"} mode
 * @property {boolean} live
 * @property {number} teachers
 * @property {number} pupils
 * @property {number | null} enrolled
 * @property {number} reporting
 * @property {number} freezing
 * @property {number | null} median_fps
 * @property {Record<string, number>} paths
 * @property {"bad" | "poor" | "good" | "none"} health
 * @property {string} node
 */

/**
 * @typedef {object} Tile
 * @property {string} school
 * @property {string} grade
 * @property {number} rooms
 * @property {number} live
 * @property {number} pupils
 * @property {number} reporting
 * @property {number} freezing
 * @property {number} bad
 * @property {number} poor
 * @property {number | null} median_fps
 */

/** @typedef {{school: string, grade: string, pupil_rate: number | null, teacher_rate: number | null, pupils_attended: number, pupils_enrolled: number | null, teachers_attended: number, teachers_expected: number}} ReportRow */

const HEALTH_TEXT = { bad: "差 Bad", poor: "一般 Poor", good: "好 Good", none: "— No reports" };
const MODE_TEXT = { live: "直播 Live", fallback: "转录播 Fallback", recorded: "录播 Recorded", idle: "无课 Idle" };

const page = {
  offset: 0,
  total: 0,
  loads: 0,
  /** @type {CityRoom[]} */
  rooms: [],
  /** @type {string[]} rooms opened as an inspector, for the tests */
  inspected: [],
  /** @type {string | null} */
  error: null,
};
const filters = {
  school: $("filter-school", HTMLSelectElement),
  grade: $("filter-grade", HTMLSelectElement),
  health: $("filter-health", HTMLSelectElement),
  mode: $("filter-mode", HTMLSelectElement),
};
const charts = { school: new ParticipationChart($("chart-school")), grade: new ParticipationChart($("chart-grade")) };

/** The token's claims (readable; the server checks the signature). */
function claims() {
  try {
    const part = pageToken().split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

/** @param {unknown} e */
function showError(e) {
  showProblem(page, e);
}

/** Keep a select's options to ``values``, and what was chosen. @param {HTMLSelectElement} select @param {string[]} values */
function fill(select, values) {
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === values.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...values.map((v) => h("option", { value: v, text: v || "—" })));
  select.value = values.includes(chosen) ? chosen : "";
}

/** @param {number} n @param {number} of */
const share = (n, of) => (of ? `${Math.round((100 * n) / of)}%` : "—");

/** @param {CityRoom} r */
function row(r) {
  const paths = Object.entries(r.paths).map(([p, n]) => `${p} ${n}`).join(" · ");
  const open = h("button", { class: "btn btn-small", type: "button", text: "巡课 Inspect", onclick: () => inspect(r.room) });
  return h(
    "tr",
    { class: `health-${r.health}`, dataset: { room: r.room, health: r.health } },
    h("td", {}, h("span", { class: `badge badge-${r.health}`, text: HEALTH_TEXT[r.health] })),
    h("td", { text: `${r.class_name} (${r.room})` }),
    h("td", { text: r.school || "—" }),
    h("td", { text: r.grade || "—" }),
    h("td", { text: MODE_TEXT[r.mode] || r.mode }),
    h("td", { text: r.live ? "🔴 直播中 live" : r.teachers ? "在线 online" : "—" }),
    h("td", { class: "num", text: r.enrolled ? `${r.pupils} / ${r.enrolled}` : String(r.pupils) }),
    h("td", { class: "num", text: r.reporting ? `${r.freezing} (${share(r.freezing, r.reporting)})` : "—" }),
    h("td", { class: "num", text: r.median_fps === null ? "—" : r.median_fps.toFixed(0) }),
    h("td", { text: paths || "—" }),
    h("td", { text: r.node || "—" }),
    h("td", {}, open),
  );
}

/** @param {Tile} t */
function tile(t) {
  const health = t.bad ? "bad" : t.poor ? "poor" : t.reporting ? "good" : "none";
  return h(
    "button",
    {
      class: `tile health-${health}`,
      type: "button",
      title: "只看这里 Show only these",
      onclick: () => {
        filters.school.value = t.school;
        filters.grade.value = t.grade;
        refilter();
      },
    },
    h("strong", { text: `${t.school || "—"} · ${t.grade || "—"}` }),
    h("span", { text: `${t.rooms} 班 classes · ${t.live} 直播 live` }),
    h("span", { text: `${t.pupils} 学生 pupils · 卡顿 freezing ${share(t.freezing, t.reporting)}` }),
    h("span", { text: `差 bad ${t.bad} · 一般 poor ${t.poor} · fps ${t.median_fps === null ? "—" : t.median_fps.toFixed(0)}` }),
  );
}

async function load() {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(page.offset) });
  for (const [name, select] of Object.entries(filters)) if (select.value) q.set(name, select.value);
  const view = await api(`/api/city?${q}`);
  page.total = view.total;
  page.rooms = view.rooms;
  page.loads += 1;
  fill(filters.school, view.schools);
  fill(filters.grade, view.grades);
  const now = view.now;
  $("summary").replaceChildren(
    h("span", {}, "课堂 Classes ", h("b", { text: String(now.rooms) })),
    h("span", {}, "直播 Live ", h("b", { text: String(now.live) })),
    h("span", {}, "学生 Pupils ", h("b", { text: String(now.pupils) })),
    h("span", {}, "报告 Reporting ", h("b", { text: String(now.reporting) })),
    h("span", {}, "卡顿 Freezing ", h("b", { text: `${now.freezing} (${share(now.freezing, now.reporting)})` })),
    h("span", {}, "差 Bad ", h("b", { text: String(now.health.bad) }), " · 一般 Poor ", h("b", { text: String(now.health.poor) })),
  );
  $("tiles").replaceChildren(.../** @type {Tile[]} */ (view.tiles).slice(0, TILES_SHOWN).map(tile));
  $("rooms").replaceChildren(...page.rooms.map(row));
  $("empty").hidden = page.rooms.length > 0;
  const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
  $("page").textContent = `${Math.floor(page.offset / PAGE_SIZE) + 1} / ${pages} (${page.total})`;
  $("prev", HTMLButtonElement).disabled = page.offset === 0;
  $("next", HTMLButtonElement).disabled = page.offset + PAGE_SIZE >= page.total;
  $("updated").textContent = `更新于 updated ${new Date(view.at * 1000).toLocaleTimeString()}`;
  $("error").hidden = true;
}

async function participation() {
  const report = await api("/api/reports/attendance");
  /** @param {ReportRow} r @param {string} label */
  const bar = (r, label) => ({ label, pupils: r.pupil_rate, teachers: r.teacher_rate });
  charts.school.show(/** @type {ReportRow[]} */ (report.schools).map((r) => bar(r, r.school || "—")));
  charts.grade.show(/** @type {ReportRow[]} */ (report.grades).map((r) => bar(r, r.grade || "—")));
  const t = report.total;
  $("participation").textContent =
    `${report.date}: 学生 pupils ${t.pupils_attended}${t.pupils_enrolled ? ` / ${t.pupils_enrolled} (${share(t.pupils_attended, t.pupils_enrolled)})` : ""}` +
    ` · 教师 teachers ${t.teachers_attended} / ${t.teachers_expected} (${share(t.teachers_attended, t.teachers_expected)})`;
}

/** Open ``room`` as an inspector in a new tab: the tab opens now (a click may open one), its address once minted. @param {string} room */
async function inspect(room) {
  const tab = window.open("about:blank", "_blank");
  try {
    const minted = await api("/api/city/inspect", { method: "POST", body: { room } });
    const url = new URL(minted.url, location.href).href;
    page.inspected.push(room);
    if (tab) {
      tab.opener = null;
      tab.location.href = url;
    } else {
      window.open(url, "_blank", "noopener");
    }
  } catch (e) {
    tab?.close();
    showError(e);
  }
}

/** The day's attendance as a file, fetched with the token (never in a link). @param {"xlsx" | "csv"} format */
async function download(format) {
  const day = new Date();
  const date = `${day.getFullYear()}-${String(day.getMonth() + 1).padStart(2, "0")}-${String(day.getDate()).padStart(2, "0")}`;
  const response = await fetch(`/api/reports/attendance?date=${date}&format=${format}`, {
    headers: { Authorization: `Bearer ${pageToken()}` },
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: `attendance-${date}.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function refilter() {
  page.offset = 0;
  load().catch(showError);
}

for (const select of Object.values(filters)) select.addEventListener("change", refilter);
$("prev").addEventListener("click", () => {
  page.offset = Math.max(0, page.offset - PAGE_SIZE);
  load().catch(showError);
});
$("next").addEventListener("click", () => {
  page.offset += PAGE_SIZE;
  load().catch(showError);
});
$("export-xlsx").addEventListener("click", () => download("xlsx").catch(showError));
$("export-csv").addEventListener("click", () => download("csv").catch(showError));

expose({
  stats: () => ({ loads: page.loads, total: page.total, offset: page.offset, rooms: page.rooms.map((r) => ({ ...r })), inspected: [...page.inspected], error: page.error }),
});

const scope = claims().scope;
$("scope").textContent = scope === "city" ? "· 全市 City" : scope ? `· ${scope}` : "";
let refreshes = 0;
async function refresh() {
  await load().catch(showError);
  if (refreshes++ % PARTICIPATION_EVERY === 0) await participation().catch(showError);
}
refresh();
setInterval(refresh, REFRESH_MS);
