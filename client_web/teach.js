// Sky Classroom — teacher page (/teach?room=R&token=T).
//
// Shows a muted camera preview; "Start broadcast" publishes camera + microphone to the
// server (the browser offers, the server answers), "Stop broadcast" unpublishes.
//
// The side panel runs the class: raised hands (`hands`), the chat, the class list (`roster`,
// with "Remove"), and "End lesson"; under the preview, a poll (`poll_open`, live
// `poll_results`, `poll_close`). A dropped connection comes back by itself (skyclass.js) and
// the broadcast goes on if its media connection stayed up.

import {
  $,
  pageParams,
  showState,
  showError,
  clearError,
  Signaling,
  newPeerConnection,
  trickleIce,
  poll,
  findStat,
  hasWebRTC,
  expose,
  h,
  clock,
  ROLE_LABELS,
  showNotice,
  ChatBox,
} from "/static/skyclass.js";

const POLL_MIN = 2;
const POLL_MAX = 6;
const POLL_START = 4; // answer boxes shown at first (A–D); empty ones are left out
const LETTERS = "ABCDEF";

const preview = $("preview");
const startBtn = $("start");
const stopBtn = $("stop");
const countEl = $("student-count");
const liveBadge = $("live-badge");
const roomEl = $("room");
const nameEl = $("name");
const noCamera = $("no-camera");
const endBtn = $("end-lesson");
const handsEl = $("hands");
const handsCount = $("hands-count");
const handsEmpty = $("hands-empty");
const rosterEl = $("roster");
const rosterCount = $("roster-count");
const rosterTotal = $("roster-total");
const pollForm = $("poll-form");
const pollQuestion = $("poll-question");
const pollOptions = $("poll-options");
const pollAdd = $("poll-add");
const pollAsk = $("poll-ask");
const pollFormStatus = $("poll-form-status");
const pollLive = $("poll-live");

const page = {
  signaling: null,
  role: null,
  name: null,
  live: false, // broadcasting now: joined.live, then true once the server answers our publish
  students: 0,
  stream: null, // camera + microphone
  pc: null, // the publish connection
  publishing: false, // between Start and Stop
  awaitingAnswer: false,
  trickle: null,
  media: "new", // publish pc connectionState
  // cached by the stats poller
  framesEncoded: 0,
  lastEncodedAt: 0,
  bytesSent: 0,
  // the class
  participantId: null,
  chat: null, // ChatBox
  roster: [], // roster.participants
  rosterTotal: 0,
  hands: [], // hands.raised, earliest first
  poll: null, // the latest poll_results: {poll_id, question, options, counts, answered, final}
  pollAsked: null, // {question, options} between "Ask" and its first results
  closedPolls: new Set(), // poll ids closed here: later non-final results for them are stale
  removing: new Set(), // participant ids with a "remove" sent
};

function pageState() {
  const s = page.signaling;
  if (!s) return "error";
  if (s.state !== "joined") return s.state; // connecting, reconnecting, closed, error
  if (page.pc && page.media === "connected") return "connected";
  return "joined";
}

function source() {
  if (page.publishing && page.media === "connected" && performance.now() - page.lastEncodedAt < 2000) return "live";
  if (page.stream && preview.videoWidth > 0) return "preview";
  return "none";
}

function stats() {
  return {
    state: pageState(),
    role: page.role,
    source: source(),
    live: page.live,
    publishing: page.publishing,
    students: page.students,
    media: page.media,
    framesEncoded: page.framesEncoded,
    framesDecoded: 0,
    bytesSent: page.bytesSent,
    videoWidth: preview.videoWidth,
    videoHeight: preview.videoHeight,
    // the class
    chat: page.chat ? page.chat.received : 0,
    roster: page.roster.length,
    rosterTotal: page.rosterTotal,
    hands: page.hands.length,
    poll: page.poll ? { poll_id: page.poll.poll_id, answered: page.poll.answered, final: page.poll.final } : null,
    reconnects: page.signaling ? page.signaling.reconnects : 0,
    reconnectAttempts: page.signaling ? page.signaling.attempt : 0, // since the last `joined`
    resumed: !!(page.signaling && page.signaling.joined && page.signaling.joined.resumed),
  };
}

expose({ stats, dropConnection: () => page.signaling && page.signaling.dropConnection() });

function render() {
  const state = pageState();
  showState(state);
  const joinedAsTeacher = page.role === "teacher" && (state === "joined" || state === "connected");
  startBtn.disabled = !(joinedAsTeacher && page.stream && !page.publishing);
  stopBtn.disabled = !page.publishing;
  liveBadge.hidden = !page.publishing;
  liveBadge.textContent = page.publishing && page.media !== "connected" ? "正在开始… Starting…" : "直播中 LIVE";
  liveBadge.classList.toggle("pending", page.publishing && page.media !== "connected");
  countEl.textContent = String(page.students);
  document.body.classList.toggle("publishing", page.publishing);
  const inClass = page.role === "teacher" && (state === "joined" || state === "connected");
  endBtn.disabled = !inClass;
  page.chat.setEnabled(state === "joined" || state === "connected");
  pollAsk.disabled = !inClass;
  const closable = inClass && page.poll && !page.poll.final;
  $("poll-close").disabled = !closable;
  $("poll-close-show").disabled = !closable;
  $("poll-students").textContent = String(page.students);
  for (const row of rosterRows.values()) {
    row.parts.remove.disabled = !inClass || page.removing.has(row.dataset.id);
  }
}

// --- camera --------------------------------------------------------------------------------

async function openCamera() {
  noCamera.hidden = true;
  try {
    page.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    console.warn("skyclass: getUserMedia", e);
    page.stream = null;
    noCamera.hidden = false;
    showError({ code: "no_camera", message: `${e.name}: ${e.message}`, fatal: false });
    render();
    return;
  }
  if (document.getElementById("error").dataset.code === "no_camera") clearError();
  if (ended()) {
    releaseCamera();
    return;
  }
  preview.srcObject = page.stream;
  preview.muted = true; // never echo the teacher's own voice
  preview.play().catch(() => {});
  render();
}

// --- publishing ----------------------------------------------------------------------------

async function start() {
  if (page.publishing || !page.stream) return;
  clearError();
  page.publishing = true;
  page.awaitingAnswer = true;
  page.media = "new";
  const pc = newPeerConnection();
  page.pc = pc;
  page.trickle = trickleIce(pc, page.signaling, "publish");
  pc.addEventListener("connectionstatechange", () => {
    if (page.pc !== pc) return;
    page.media = pc.connectionState;
    if (pc.connectionState === "failed") {
      showError({ code: "media_failed", message: "请再按一次“开始直播” Press Start broadcast again.", fatal: false });
      stop();
      return;
    }
    render();
  });
  for (const track of page.stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [page.stream] });
  }
  render();
  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (page.pc !== pc) return; // stopped meanwhile
    if (!page.signaling.send({ type: "publish", sdp: pc.localDescription.sdp })) throw new Error("not connected");
    page.trickle.ready();
  } catch (e) {
    console.error("skyclass: publish", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    teardown();
  }
}

function stop() {
  if (!page.publishing) return;
  page.signaling.send({ type: "unpublish" });
  teardown();
}

function teardown() {
  const pc = page.pc;
  page.pc = null;
  page.trickle = null;
  page.publishing = false;
  page.awaitingAnswer = false;
  page.live = false;
  page.media = "closed";
  page.framesEncoded = 0;
  page.bytesSent = 0;
  if (pc) pc.close();
  render();
}

async function onAnswer(msg) {
  const pc = page.pc;
  if (msg.target !== "publish" || !pc || pc.signalingState !== "have-local-offer") return;
  page.awaitingAnswer = false;
  page.live = true; // the server accepted the broadcast
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  } catch (e) {
    console.error("skyclass: answer", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    stop();
  }
}

// --- raised hands --------------------------------------------------------------------------

function renderHands() {
  handsEl.replaceChildren(
    ...page.hands.map((hand, i) =>
      h(
        "li",
        { class: "hand-row", dataset: { id: hand.participant_id } },
        h("span", { class: "hand-order", text: `${i + 1}.` }),
        h("span", { class: "hand-name", text: hand.name }),
        h("time", { class: "hand-time", text: clock(hand.at) }),
      ),
    ),
  );
  handsCount.textContent = String(page.hands.length);
  handsCount.dataset.n = String(page.hands.length);
  handsEmpty.hidden = page.hands.length > 0;
}

// --- class list ----------------------------------------------------------------------------

const rosterRows = new Map(); // participant_id → <li>

function rosterRow(entry) {
  const name = h("span", { class: "r-name" });
  const role = h("span", { class: "r-role" });
  const hand = h("span", { class: "r-hand", title: "举手 Hand raised", text: "✋" });
  const away = h("span", { class: "r-away", text: "暂时离开 Away" });
  const remove = h("button", { type: "button", class: "btn btn-small btn-plain r-remove", text: "移出 Remove" });
  remove.addEventListener("click", () => removeStudent(entry.participant_id));
  const row = h("li", { class: "roster-row", dataset: { id: entry.participant_id } }, hand, name, role, away, remove);
  row.parts = { name, role, hand, away, remove };
  return row;
}

function renderRoster() {
  const seen = new Set();
  const inClass = pageState() === "joined" || pageState() === "connected";
  let i = 0;
  for (const entry of page.roster) {
    seen.add(entry.participant_id);
    let row = rosterRows.get(entry.participant_id);
    if (!row) {
      row = rosterRow(entry);
      rosterRows.set(entry.participant_id, row);
    }
    const { name, role, hand, away, remove } = row.parts;
    if (name.textContent !== entry.name) name.textContent = entry.name;
    role.textContent = ROLE_LABELS[entry.role] || entry.role;
    hand.dataset.on = String(!!entry.hand);
    away.hidden = !entry.away;
    row.classList.toggle("away", !!entry.away);
    row.classList.toggle("hand", !!entry.hand);
    row.dataset.role = entry.role;
    row.dataset.name = entry.name;
    remove.hidden = entry.role !== "student";
    remove.disabled = !inClass || page.removing.has(entry.participant_id);
    if (rosterEl.children[i] !== row) rosterEl.insertBefore(row, rosterEl.children[i] || null);
    i += 1;
  }
  for (const [id, row] of rosterRows) {
    if (seen.has(id)) continue;
    row.remove();
    rosterRows.delete(id);
    page.removing.delete(id);
  }
  rosterCount.textContent = String(page.rosterTotal);
  const cut = page.rosterTotal > page.roster.length;
  rosterTotal.hidden = !cut;
  if (cut) rosterTotal.textContent = `只显示前 ${page.roster.length} 人，共 ${page.rosterTotal} 人 Showing ${page.roster.length} of ${page.rosterTotal}`;
}

function removeStudent(participantId) {
  const entry = page.roster.find((e) => e.participant_id === participantId);
  if (!entry) return;
  const ok = window.confirm(
    `把 ${entry.name} 移出本节课？移出后本节课不能再进入。\nRemove ${entry.name} from this lesson? They cannot come back to it.`,
  );
  if (!ok) return;
  if (page.signaling.send({ type: "remove", participant_id: participantId })) {
    page.removing.add(participantId);
    renderRoster();
  }
}

// --- poll ----------------------------------------------------------------------------------

function addOptionInput(value = "") {
  const n = pollOptions.children.length;
  if (n >= POLL_MAX) return;
  const input = h("input", { class: "poll-option-input", maxlength: 100, placeholder: `答案 Answer ${LETTERS[n]}` });
  input.value = value;
  const row = h("label", { class: "poll-option-row" }, h("span", { class: "letter", text: LETTERS[n] }), input);
  pollOptions.append(row);
  pollAdd.disabled = pollOptions.children.length >= POLL_MAX;
  return input;
}

function resetPollForm() {
  pollQuestion.value = "";
  pollOptions.replaceChildren();
  for (let i = 0; i < POLL_START; i++) addOptionInput();
  pollFormStatus.hidden = true;
}

function askPoll(ev) {
  ev.preventDefault();
  const question = pollQuestion.value.trim();
  const options = [...pollOptions.querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
  let problem = null;
  if (!question) problem = "请写下问题 Please write the question.";
  else if (options.length < POLL_MIN) problem = "至少需要两个答案 Write at least two answers.";
  if (problem) {
    pollFormStatus.textContent = problem;
    pollFormStatus.hidden = false;
    return;
  }
  if (!page.signaling.send({ type: "poll_open", question: question.slice(0, 300), options: options.map((o) => o.slice(0, 100)) })) {
    pollFormStatus.textContent = "现在没有连接 Not connected.";
    pollFormStatus.hidden = false;
    return;
  }
  pollFormStatus.hidden = true;
  page.pollAsked = { question, options };
  page.poll = null;
  renderPoll();
  render();
}

function closePoll(show) {
  if (!page.poll || page.poll.final) return;
  if (page.signaling.send({ type: "poll_close", poll_id: page.poll.poll_id, show })) {
    page.closedPolls.add(page.poll.poll_id);
  }
}

function onPollResults(msg) {
  if (!msg.final && page.closedPolls.has(msg.poll_id)) return; // stale: closed here already
  if (msg.final) page.closedPolls.add(msg.poll_id);
  page.pollAsked = null;
  page.poll = msg;
  renderPoll();
}

function renderBars(list, poll, mine = null) {
  const total = Math.max(1, poll.answered);
  list.replaceChildren(
    ...poll.options.map((option, i) => {
      const count = poll.counts[i] || 0;
      const pct = Math.round((100 * count) / total);
      return h(
        "li",
        { class: `bar${mine === i ? " mine" : ""}`, dataset: { count } },
        h("span", { class: "bar-label" }, h("span", { class: "letter", text: LETTERS[i] }), ` ${option}`),
        h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: `width: ${poll.answered ? pct : 0}%` })),
        h("span", { class: "bar-count", text: `${count} (${poll.answered ? pct : 0}%)` }),
      );
    }),
  );
}

function renderPoll() {
  const poll = page.poll;
  const asked = page.pollAsked;
  pollForm.hidden = !!(poll || asked);
  pollLive.hidden = !(poll || asked);
  if (!poll && !asked) return;
  const shown = poll || { question: asked.question, options: asked.options, counts: [], answered: 0, final: false };
  $("poll-live-question").textContent = shown.question;
  renderBars($("poll-bars"), shown);
  $("poll-answered").textContent = String(shown.answered);
  const label = $("poll-state-label");
  label.textContent = !poll ? "正在发起… Opening…" : poll.final ? "已结束 Closed" : "进行中 Open";
  label.dataset.state = !poll ? "opening" : poll.final ? "closed" : "open";
  $("poll-open-buttons").hidden = !!(poll && poll.final);
  $("poll-of").hidden = !!(poll && poll.final);
  $("poll-done-buttons").hidden = !(poll && poll.final);
}

// --- end of the lesson ---------------------------------------------------------------------

function endLesson() {
  const ok = window.confirm("结束本节课？直播会停止，所有学生都会离开。\nEnd the lesson? The broadcast stops and everyone leaves.");
  if (!ok) return;
  page.signaling.send({ type: "end_lesson" });
}

// --- signaling -----------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      if (page.signaling.reconnects > 0) onRejoined(msg);
      page.role = msg.role;
      page.name = msg.name;
      page.live = !!msg.live;
      page.participantId = msg.participant_id;
      page.chat.selfId = msg.participant_id;
      roomEl.textContent = msg.room;
      nameEl.textContent = msg.name || "";
      if (msg.role !== "teacher") {
        const q = new URLSearchParams(location.search);
        showError({
          code: "wrong_page",
          message: `这是${msg.role}链接，请打开 This is a ${msg.role} link; open /learn?${q}`,
          fatal: false,
        });
      }
      break;
    case "answer":
      onAnswer(msg);
      break;
    case "presence":
      page.students = Number(msg.students) || 0;
      break;
    case "broadcast":
      page.live = !!msg.live;
      break;
    case "chat":
      page.chat.add(msg);
      break;
    case "hands":
      page.hands = Array.isArray(msg.raised) ? msg.raised : [];
      renderHands();
      break;
    case "roster":
      page.roster = Array.isArray(msg.participants) ? msg.participants : [];
      page.rosterTotal = Number(msg.total) || page.roster.length;
      renderRoster();
      break;
    case "poll_results":
      onPollResults(msg);
      break;
    case "lesson_ended":
      showNotice("lesson_ended");
      break;
    case "ice":
      // The server's candidates are in its SDP; accept a trickled one all the same.
      if (msg.target === "publish" && page.pc && msg.candidate) {
        page.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      }
      break;
    case "error":
      // A refused publish leaves nothing to stop on the server side.
      if (page.awaitingAnswer && ["forbidden", "bad_sdp", "bad_state", "server_error"].includes(msg.code)) teardown();
      break;
  }
  render();
}

/**
 * Back after a dropped connection. The server kept our broadcast if its media connection stayed
 * up (joined.live); otherwise, or if the publish was under way when the connection dropped,
 * publish again. A "Stop" pressed while away is sent now.
 */
function onRejoined(msg) {
  console.info(`skyclass: back in the classroom (resumed: ${msg.resumed})`);
  if (page.publishing && (page.awaitingAnswer || !msg.live)) {
    teardown();
    start();
  } else if (!page.publishing && msg.live) {
    page.signaling.send({ type: "unpublish" }); // does nothing unless the broadcast is ours
  }
  if (page.pollAsked) {
    // The question may not have reached the server: ask again with the form filled in.
    const asked = page.pollAsked;
    page.pollAsked = null;
    if (!page.poll) {
      pollQuestion.value = asked.question;
      pollOptions.replaceChildren();
      for (const o of asked.options) addOptionInput(o);
      while (pollOptions.children.length < POLL_MIN) addOptionInput();
    }
    renderPoll();
  }
}

/** A non-fatal error that belongs to one of the panel's parts; true when shown there. */
function onError(msg) {
  if (page.chat.takeError(msg)) return true;
  if (page.pollAsked && msg.code === "bad_message") {
    page.pollAsked = null;
    renderPoll();
    pollFormStatus.textContent = `投票没有发出 The poll was not sent: ${msg.message}`;
    pollFormStatus.hidden = false;
    return true;
  }
  if (msg.code === "bad_state" && page.poll && !page.poll.final && page.closedPolls.has(page.poll.poll_id)) {
    page.poll = { ...page.poll, final: true }; // the server had closed it already
    renderPoll();
    return true;
  }
  if (msg.code === "bad_state" && page.removing.size) page.removing.clear(); // that student had left already
  return false;
}

function ended() {
  const s = page.signaling.state;
  return s === "closed" || s === "error";
}

/** Turn the camera and microphone off (their light goes out) once the session is over. */
function releaseCamera() {
  if (!page.stream) return;
  for (const t of page.stream.getTracks()) t.stop();
  page.stream = null;
  preview.srcObject = null;
}

function onSignalingChange() {
  if (ended()) {
    if (page.pc) teardown();
    releaseCamera();
  }
  renderRoster();
  document.body.classList.toggle("ended", ended());
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  const pc = page.pc;
  if (!pc) return;
  const report = await pc.getStats();
  if (page.pc !== pc) return;
  const out = findStat(report, "outbound-rtp", "video");
  if (!out) return;
  const frames = out.framesEncoded || 0;
  if (frames > page.framesEncoded) page.lastEncodedAt = performance.now();
  page.framesEncoded = frames;
  page.bytesSent = out.bytesSent || 0;
});

// --- wiring --------------------------------------------------------------------------------

startBtn.addEventListener("click", start);
stopBtn.addEventListener("click", stop);
$("retry-camera").addEventListener("click", openCamera);
endBtn.addEventListener("click", endLesson);
pollForm.addEventListener("submit", askPoll);
pollAdd.addEventListener("click", () => addOptionInput()?.focus());
$("poll-close").addEventListener("click", () => closePoll(false));
$("poll-close-show").addEventListener("click", () => closePoll(true));
$("poll-new").addEventListener("click", () => {
  page.poll = null;
  resetPollForm();
  renderPoll();
  render();
  pollQuestion.focus();
});
resetPollForm();
renderHands();

function main() {
  const { room, token } = pageParams();
  page.signaling = new Signaling({ room, token, onMessage, onChange: onSignalingChange, onError });
  page.chat = new ChatBox(page.signaling);
  roomEl.textContent = room || "—";
  if (!hasWebRTC()) {
    showError({ code: "no_webrtc", message: "", fatal: true });
    page.signaling.state = "error";
    render();
    return;
  }
  if (!room || !token) {
    showError({ code: "no_params", message: "/teach?room=…&token=…", fatal: true });
    page.signaling.state = "error";
    render();
    return;
  }
  render();
  page.signaling.start();
  if (navigator.mediaDevices?.getUserMedia) openCamera();
  else showError({ code: "no_camera", message: "navigator.mediaDevices is unavailable (HTTPS is required)", fatal: false });
}

main();
