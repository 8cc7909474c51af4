// Sky Classroom — teacher page (/teach?room=R&token=T).
//
// Shows a muted camera preview; "Start broadcast" publishes camera + microphone to the
// server (the browser offers, the server answers), "Stop broadcast" unpublishes. While
// broadcasting, "Share screen" adds the screen as a third track: the page publishes again on a
// fresh peer connection (microphone, camera, screen, in that order), which the server takes in
// place of the first; "Stop sharing" (or the browser's own stop button) publishes microphone and
// camera again.
//
// The teacher also answers the server's subscription offer (recvonly; the offer's `slots` name
// each m-line) to see and hear the student on stage: "Invite on stage" beside a raised hand or
// a student in the class list (`invite`), then "Mute"/"Unmute" (`mute`) and "End turn"
// (`end_turn`) while the student is on stage (`stage`).
//
// The side panel runs the class: raised hands (`hands`), the chat, the class list (`roster`,
// with "Remove"), and "End lesson"; under the preview, a poll (`poll_open`, live
// `poll_results`, `poll_close`). A dropped connection comes back by itself (skyclass.js) and
// the broadcast goes on if its media connection stayed up.

import {
  $,
  startPage,
  stageStats,
  showState,
  showError,
  clearError,
  newPeerConnection,
  trickleIce,
  poll,
  findStat,
  slotOf,
  inboundBySlot,
  replaceTrack,
  expose,
  h,
  clock,
  ROLE_LABELS,
  showNotice,
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
const shareBtn = $("share");
const unshareBtn = $("unshare");
const screenPreview = $("screen-preview");
const stageTile = $("stage-tile");
const stageVideo = $("stage-video");
const stageName = $("stage-name");
const stageMutedEl = $("stage-muted");
const stageWaiting = $("stage-waiting");
const stageWaitingText = $("stage-waiting-text");
const stageMuteBtn = $("stage-mute");
const stageEndBtn = $("stage-end");
const stageCancelBtn = $("stage-cancel");
const stageUnmuteBtn = $("stage-unmute");

const STAGE_FRESH_MS = 2000; // the stage video shows once a frame came this recently
const RESUBSCRIBE_TRIES = 3;
const stageStream = new MediaStream(); // stage_audio + stage_video of the subscription

const page = {
  signaling: null,
  role: null,
  name: null,
  live: false, // broadcasting now: joined.live, then true once the server answers our publish
  students: 0,
  stream: null, // camera + microphone
  pc: null, // the publish connection
  oldPc: null, // the publication being replaced: closed once the new one connects
  publishing: false, // between Start and Stop
  awaitingAnswer: false,
  republishWanted: false, // the tracks changed while a publish was waiting for its answer
  trickle: null,
  media: "new", // publish pc connectionState (the old one's while a replacement connects)
  cameraSender: null,
  screenSender: null,
  // the shared screen (getDisplayMedia), from "Share screen" to "Stop sharing"
  screen: null,
  // cached by the stats poller
  framesEncoded: 0,
  encodedBase: 0, // framesEncoded of the publications replaced so far
  lastEncodedAt: 0,
  bytesSent: 0,
  screenFramesEncoded: 0,
  // the subscription: the student on stage
  sub: null, // {pc, slots, trickle}
  subMedia: "new",
  subscriptions: 0,
  resubscribes: 0,
  stage: null, // {participant_id, name, muted} from `stage`
  stageEpoch: 0, // the websocket (signaling.epoch) the last `stage` came on
  stageSince: -Infinity, // performance.now() when this student came on stage
  invited: null, // {participant_id, name}: invited, not on stage yet
  muting: false, // a `mute` sent, its `stage` not back yet
  stageFrames: 0,
  stageBase: 0,
  stageLastFrameAt: -Infinity,
  stageAudioPackets: 0,
  stageAudioBase: 0,
  stageAutoplayBlocked: false,
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
    sharing: sharing(),
    screenFramesEncoded: page.screenFramesEncoded,
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
    // the student on stage, through the subscription
    subscription: page.subMedia,
    subscriptions: page.subscriptions,
    invited: page.invited ? page.invited.participant_id : null,
    stage: stageStats(page, stageVideo),
  };
}

/** The broadcast carries the shared screen (or is about to: a replacement under way). */
function sharing() {
  return !!(page.publishing && page.screen && page.screenSender);
}

expose({ stats, dropConnection: () => page.signaling && page.signaling.dropConnection() });

function render() {
  const state = pageState();
  showState(state);
  const joinedAsTeacher = page.role === "teacher" && (state === "joined" || state === "connected");
  startBtn.disabled = !(joinedAsTeacher && page.stream && !page.publishing);
  stopBtn.disabled = !page.publishing;
  shareBtn.hidden = !!page.screen;
  shareBtn.disabled = !(joinedAsTeacher && page.publishing && navigator.mediaDevices?.getDisplayMedia);
  unshareBtn.hidden = !page.screen;
  unshareBtn.disabled = !page.publishing;
  screenPreview.hidden = !page.screen;
  document.body.classList.toggle("sharing", !!page.screen);
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
  renderStage(inClass);
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

// The camera goes out twice: as it is, and as a small cheap layer that students on weak links get
// (the server chooses per student from their receiver reports).
const LOW_LAYER = { scaleResolutionDownBy: 2, maxBitrate: 150_000, maxFramerate: 15 };

/**
 * What the broadcast sends, in m-line order: microphone, camera, the camera's low layer, and the
 * screen when shared; `name` is what the publish message calls each (`tracks`).
 */
function broadcastTracks() {
  const out = [];
  const mic = page.stream.getAudioTracks()[0];
  const camera = page.stream.getVideoTracks()[0];
  if (mic) out.push({ track: mic, stream: page.stream, role: "mic", name: "audio" });
  if (camera) {
    out.push({ track: camera, stream: page.stream, role: "camera", name: "video" });
    out.push({ track: camera, stream: page.stream, role: "camera_low", name: "video_low", encoding: LOW_LAYER });
  }
  const screen = page.screen && page.screen.getVideoTracks()[0];
  if (screen && screen.readyState === "live") out.push({ track: screen, stream: page.screen, role: "screen", name: "screen" });
  return out;
}

async function start() {
  if (page.publishing || !page.stream) return;
  clearError();
  page.publishing = true;
  await openPublication();
}

/**
 * Publish the current tracks on a fresh peer connection. A second `publish` replaces the first
 * on the server (students stay attached); the old connection is kept until the new one connects.
 * One publish waits for its answer at a time: a change meanwhile publishes again after it.
 */
async function openPublication() {
  if (!page.publishing || !page.stream) return;
  if (page.awaitingAnswer) {
    page.republishWanted = true;
    return;
  }
  const previous = page.pc;
  if (previous) {
    if (page.oldPc && page.oldPc !== previous) page.oldPc.close();
    page.oldPc = previous;
    page.encodedBase = page.framesEncoded;
  } else {
    page.media = "new";
  }
  page.awaitingAnswer = true;
  page.republishWanted = false;
  const pc = newPeerConnection();
  page.pc = pc;
  page.trickle = trickleIce(pc, page.signaling, "publish");
  pc.addEventListener("connectionstatechange", () => {
    if (page.pc !== pc) return;
    const state = pc.connectionState;
    if (state === "connected" || state === "failed") closeOldPc();
    if (!page.oldPc) page.media = state;
    if (state === "failed") {
      showError({ code: "media_failed", message: "请再按一次“开始直播” Press Start broadcast again.", fatal: false });
      stop();
      return;
    }
    render();
  });
  page.cameraSender = null;
  page.screenSender = null;
  const sent = broadcastTracks();
  for (const { track, stream, role, encoding } of sent) {
    const init = { direction: "sendonly", streams: [stream] };
    if (encoding) init.sendEncodings = [encoding];
    const { sender } = pc.addTransceiver(track, init);
    if (role === "camera") page.cameraSender = sender;
    if (role === "screen") page.screenSender = sender;
  }
  render();
  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (page.pc !== pc) return; // stopped meanwhile
    const publish = { type: "publish", sdp: pc.localDescription.sdp, tracks: sent.map((t) => t.name) };
    if (!page.signaling.send(publish)) throw new Error("not connected");
    page.trickle.ready();
  } catch (e) {
    if (page.pc !== pc) return;
    console.error("skyclass: publish", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    publishRefused();
  }
}

function closeOldPc() {
  const old = page.oldPc;
  page.oldPc = null;
  if (old) old.close();
}

function stop() {
  if (!page.publishing) return;
  page.signaling.send({ type: "unpublish" });
  teardown();
  releaseScreen();
}

function teardown() {
  const pc = page.pc;
  page.pc = null;
  page.trickle = null;
  page.publishing = false;
  page.awaitingAnswer = false;
  page.republishWanted = false;
  page.live = false;
  page.media = "closed";
  page.framesEncoded = 0;
  page.encodedBase = 0;
  page.bytesSent = 0;
  page.screenFramesEncoded = 0;
  page.cameraSender = null;
  page.screenSender = null;
  closeOldPc();
  if (pc) pc.close();
  render();
}

/** The server refused our publish: a refused replacement leaves the broadcast as it was. */
function publishRefused() {
  const old = page.oldPc;
  if (!old || old.signalingState === "closed") {
    teardown();
    releaseScreen();
    return;
  }
  const refused = page.pc;
  page.oldPc = null;
  page.pc = old;
  page.awaitingAnswer = false;
  page.republishWanted = false;
  page.media = old.connectionState;
  if (refused) refused.close();
  // The old publication is the one before the change: it may or may not carry the screen.
  const senders = old.getSenders().filter((s) => s.track && s.track.kind === "video");
  const screenTrack = page.screen && page.screen.getVideoTracks()[0];
  page.cameraSender = senders.find((s) => s.track !== screenTrack) || null;
  page.screenSender = senders.find((s) => screenTrack && s.track === screenTrack) || null;
  if (!page.screenSender) releaseScreen();
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
    return;
  }
  if (page.republishWanted && page.pc === pc) openPublication();
}

// --- sharing the screen --------------------------------------------------------------------

async function share() {
  if (!page.publishing || page.screen) return;
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    console.warn("skyclass: getDisplayMedia", e);
    // NotAllowedError: the teacher chose nothing (or the browser refused); say so plainly.
    showError({ code: "no_screen", message: `${e.name}: ${e.message}`, fatal: false });
    return;
  }
  shareStream(display);
}

/** Share `display` (a MediaStream with a video track) as the screen. */
function shareStream(display) {
  const track = display && display.getVideoTracks()[0];
  if (!track || !page.publishing || page.screen) {
    if (display && display !== page.screen) for (const t of display.getTracks()) t.stop();
    return false;
  }
  if ("contentHint" in track) track.contentHint = "detail"; // text and slides stay sharp
  // The browser's own "Stop sharing" ends the track.
  track.addEventListener("ended", () => {
    if (page.screen === display) unshare();
  });
  page.screen = display;
  screenPreview.srcObject = display;
  screenPreview.play().catch(() => {});
  openPublication();
  return true;
}

function unshare() {
  if (!page.screen) return;
  releaseScreen();
  if (page.publishing) openPublication();
  render();
}

function releaseScreen() {
  const display = page.screen;
  if (!display) return;
  page.screen = null;
  for (const t of display.getTracks()) t.stop();
  screenPreview.srcObject = null;
  render();
}

// --- the student on stage ------------------------------------------------------------------

/** The server's subscription offer: answer it (recvonly) and show what the stage slots carry. */
async function onOffer(msg) {
  if (msg.target !== "subscribe") return;
  const old = page.sub;
  if (old) {
    page.sub = null;
    old.pc.close();
    page.stageBase = page.stageFrames;
    page.stageAudioBase = page.stageAudioPackets;
  }
  // Back after a dropped connection: `stage` comes before the offer when someone is on stage.
  if (page.stage && page.stageEpoch !== page.signaling.epoch) setStage(null);
  const pc = newPeerConnection();
  const slots = msg.slots;
  const sub = { pc, slots, trickle: trickleIce(pc, page.signaling, "subscribe") };
  page.sub = sub;
  page.subMedia = pc.connectionState;
  page.subscriptions += 1;
  pc.addEventListener("track", (ev) => {
    if (page.sub !== sub) return;
    const slot = slotOf(pc, ev.transceiver, slots);
    if (slot !== "stage_audio" && slot !== "stage_video") return; // the teacher's own slots stay idle
    replaceTrack(stageStream, ev.track);
    if (stageVideo.srcObject !== stageStream) stageVideo.srcObject = stageStream;
    playStage();
  });
  pc.addEventListener("connectionstatechange", () => {
    if (page.sub !== sub) return;
    page.subMedia = pc.connectionState;
    if (pc.connectionState === "connected") page.resubscribes = 0;
    if (pc.connectionState === "failed" && page.signaling.state === "joined" && page.resubscribes < RESUBSCRIBE_TRIES) {
      if (page.signaling.send({ type: "subscribe" })) {
        page.resubscribes += 1;
        console.warn("skyclass: subscription failed; asking for a fresh one");
      }
    }
    render();
  });
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (page.sub !== sub) return; // replaced meanwhile
    page.signaling.send({ type: "answer", target: "subscribe", sdp: pc.localDescription.sdp });
    sub.trickle.ready();
  } catch (e) {
    if (page.sub !== sub) return;
    console.error("skyclass: subscribe", e);
  }
  render();
}

/** Play the stage with its sound; muted (with a button) where the browser wants a click first. */
function playStage() {
  stageVideo.muted = page.stageAutoplayBlocked;
  stageVideo.play().catch((e) => {
    if (e.name !== "NotAllowedError" || stageVideo.muted) return;
    page.stageAutoplayBlocked = true;
    stageVideo.muted = true;
    stageVideo.play().catch(() => {});
    render();
  });
}

function setStage(stage) {
  const before = page.stage ? page.stage.participant_id : null;
  page.stage = stage;
  if (stage && stage.participant_id !== before) page.stageSince = performance.now();
  if (stage && stageVideo.srcObject && stageVideo.paused) playStage();
}

function onStage(msg) {
  page.stageEpoch = page.signaling.epoch;
  page.muting = false;
  page.invited = null; // on stage now, or the turn (and any invitation) is over
  setStage(msg.participant_id ? { participant_id: msg.participant_id, name: msg.name || "", muted: !!msg.muted } : null);
}

function invite(participantId) {
  const entry = page.roster.find((e) => e.participant_id === participantId) || page.hands.find((e) => e.participant_id === participantId);
  if (!entry || page.stage) return;
  if (page.signaling.send({ type: "invite", participant_id: participantId })) {
    page.invited = { participant_id: participantId, name: entry.name, at: performance.now() };
  }
  render();
}

function cancelInvitation() {
  // end_turn with nobody on stage withdraws the invitation; nobody is told.
  if (page.invited && page.signaling.send({ type: "end_turn" })) page.invited = null;
  render();
}

function toggleMute() {
  const stage = page.stage;
  if (!stage || page.muting) return;
  if (page.signaling.send({ type: "mute", participant_id: stage.participant_id, muted: !stage.muted })) page.muting = true;
  render();
}

function endTurn() {
  if (!page.stage) return;
  page.signaling.send({ type: "end_turn" });
  render();
}

/** Invite / Mute / End turn beside a student in the hands list or the class list. */
function stageControls(participantId) {
  const inviteBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-invite", text: "邀请上台 Invite on stage" });
  const cancelBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-cancel", text: "取消邀请 Cancel invitation" });
  const muteBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-mute", text: "静音 Mute" });
  const endBtn = h("button", { type: "button", class: "btn btn-small s-end", text: "结束发言 End turn" });
  inviteBtn.addEventListener("click", () => invite(participantId));
  cancelBtn.addEventListener("click", cancelInvitation);
  muteBtn.addEventListener("click", toggleMute);
  endBtn.addEventListener("click", endTurn);
  const box = h("span", { class: "stage-ctl", dataset: { id: participantId } }, inviteBtn, cancelBtn, muteBtn, endBtn);
  updateStageControls(box, pageState() === "joined" || pageState() === "connected");
  return box;
}

function updateStageControls(box, inClass) {
  const id = box.dataset.id;
  const [inviteBtn, cancelBtn, muteBtn, endBtn] = box.children;
  const onStage = !!(page.stage && page.stage.participant_id === id);
  const invited = !!(page.invited && page.invited.participant_id === id);
  const entry = page.roster.find((e) => e.participant_id === id);
  inviteBtn.hidden = onStage || invited;
  inviteBtn.disabled = !inClass || !!page.stage || !!(entry && entry.away);
  inviteBtn.title = page.stage ? "请先结束台上学生的发言 End the current turn first" : "";
  cancelBtn.hidden = !invited;
  cancelBtn.disabled = !inClass;
  muteBtn.hidden = !onStage;
  endBtn.hidden = !onStage;
  muteBtn.disabled = endBtn.disabled = !inClass;
  if (onStage) {
    const label = page.stage.muted ? "取消静音 Unmute" : "静音 Mute";
    if (muteBtn.textContent !== label) muteBtn.textContent = label;
    muteBtn.disabled = !inClass || page.muting;
    muteBtn.setAttribute("aria-pressed", String(page.stage.muted));
  }
  box.closest("li")?.classList.toggle("on-stage", onStage);
}

function renderStage(inClass) {
  for (const box of document.querySelectorAll(".stage-ctl")) updateStageControls(box, inClass);
  const stage = page.stage;
  const invited = page.invited;
  stageTile.hidden = !stage && !invited;
  stageTile.dataset.state = stage ? "on-stage" : invited ? "invited" : "empty";
  const name = stage ? stage.name : invited ? invited.name : "";
  if (stageName.textContent !== name) stageName.textContent = name;
  stageMutedEl.hidden = !(stage && stage.muted);
  stageMuteBtn.hidden = stageEndBtn.hidden = !stage;
  stageCancelBtn.hidden = !(!stage && invited);
  stageMuteBtn.disabled = !inClass || page.muting;
  stageEndBtn.disabled = stageCancelBtn.disabled = !inClass;
  if (stage) {
    const label = stage.muted ? "取消静音 Unmute" : "静音 Mute";
    if (stageMuteBtn.textContent !== label) stageMuteBtn.textContent = label;
    stageMuteBtn.setAttribute("aria-pressed", String(stage.muted));
  }
  const flowing = !!stage && page.stageLastFrameAt > page.stageSince && performance.now() - page.stageLastFrameAt < STAGE_FRESH_MS && stageVideo.videoWidth > 0;
  stageVideo.hidden = !stage;
  stageWaiting.hidden = flowing;
  const text = stage ? "正在连接学生的画面… Connecting to the student's video…" : "已邀请，等待学生上台… Invited — waiting for the student…";
  if (stageWaitingText.textContent !== text) stageWaitingText.textContent = text;
  stageUnmuteBtn.hidden = !(stage && page.stageAutoplayBlocked && stageVideo.muted);
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
        stageControls(hand.participant_id),
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
  const stage = entry.role === "student" ? stageControls(entry.participant_id) : null;
  const row = h("li", { class: "roster-row", dataset: { id: entry.participant_id } }, hand, name, role, away, stage, remove);
  row.parts = { name, role, hand, away, remove, stage };
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
    if (page.invited && page.invited.participant_id === id) page.invited = null; // left before coming on stage
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
    case "offer":
      onOffer(msg);
      break;
    case "stage":
      onStage(msg);
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
      } else if (msg.target === "subscribe" && page.sub && msg.candidate) {
        page.sub.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      }
      break;
    case "error":
      // A refused publish leaves nothing to stop on the server side (a refused replacement
      // leaves the broadcast as it was).
      if (page.awaitingAnswer && ["forbidden", "bad_sdp", "bad_state", "server_error"].includes(msg.code)) publishRefused();
      if (page.muting) page.muting = false;
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
    teardown(); // the screen, if shared, stays shared: start() publishes it again
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
  if (msg.code === "bad_state" && page.invited && performance.now() - page.invited.at < 5000) {
    page.invited = null; // the invited student had left already
    render();
  }
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
    releaseScreen();
    releaseCamera();
    if (page.sub) {
      page.sub.pc.close();
      page.sub = null;
      page.subMedia = "closed";
    }
    page.stage = null;
    page.invited = null;
  }
  renderRoster();
  document.body.classList.toggle("ended", ended());
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  const pc = page.pc;
  if (!pc) return;
  const camera = page.cameraSender;
  const screen = page.screenSender;
  const report = camera ? await camera.getStats() : await pc.getStats();
  const screenReport = screen ? await screen.getStats() : null;
  if (page.pc !== pc) return;
  const out = findStat(report, "outbound-rtp", "video");
  if (out) {
    const frames = page.encodedBase + (out.framesEncoded || 0);
    if (frames > page.framesEncoded) page.lastEncodedAt = performance.now();
    page.framesEncoded = frames;
    page.bytesSent = out.bytesSent || 0;
  }
  const screenOut = screenReport && findStat(screenReport, "outbound-rtp", "video");
  page.screenFramesEncoded = screenOut ? screenOut.framesEncoded || 0 : 0;
});

// The subscription: frames of the student on stage.
poll(async () => {
  const sub = page.sub;
  if (!sub || sub.pc.signalingState === "closed") return;
  const report = await sub.pc.getStats();
  if (page.sub !== sub) return;
  const slots = inboundBySlot(report, sub.pc, sub.slots);
  if (slots.stage_video) {
    const frames = page.stageBase + (slots.stage_video.framesDecoded || 0);
    if (frames > page.stageFrames) page.stageLastFrameAt = performance.now();
    page.stageFrames = frames;
  }
  if (slots.stage_audio) page.stageAudioPackets = page.stageAudioBase + (slots.stage_audio.packetsReceived || 0);
  if (page.stage || page.invited) render();
});

// --- wiring --------------------------------------------------------------------------------

startBtn.addEventListener("click", start);
stopBtn.addEventListener("click", stop);
shareBtn.addEventListener("click", share);
unshareBtn.addEventListener("click", unshare);
stageMuteBtn.addEventListener("click", toggleMute);
stageEndBtn.addEventListener("click", endTurn);
stageCancelBtn.addEventListener("click", cancelInvitation);
stageUnmuteBtn.addEventListener("click", () => {
  page.stageAutoplayBlocked = false;
  stageVideo.muted = false;
  stageVideo.play().catch(() => {});
  render();
});
stageVideo.addEventListener("resize", render);
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
  if (!startPage(page, { path: "/teach", roomEl, onMessage, onChange: onSignalingChange, onError, render })) return;
  if (navigator.mediaDevices?.getUserMedia) openCamera();
  else showError({ code: "no_camera", message: "navigator.mediaDevices is unavailable (HTTPS is required)", fatal: false });
}

main();
