// @ts-check
// Sky Classroom — teacher page (/teach?room=R&token=T).
//
// The camera preview and the broadcast: "Start broadcast", "Stop broadcast", "Share screen"
// (broadcast.js, publish.js). The teacher also answers the server's subscription offer
// (recvonly; subscribe.js) to see and hear the student on stage: "Invite on stage" beside a
// raised hand or a student in the class list, then "Mute"/"Unmute" and "End turn" (stage.js).
//
// The side panel runs the class: raised hands (`hands`, hands.js), the chat, the class list
// (`roster`, with "Remove", roster.js), and "End lesson"; under the preview, a poll (polls.js).
// A dropped connection comes back by itself (connection.js) and the broadcast goes on if its
// media connection stayed up.

import { $, button, showState, showError, showNotice, expose } from "./dom.js";
import { Signaling, pageParams, startPage } from "./connection.js";
import { poll, useIceServers } from "./rtc.js";
import { Subscription } from "./subscribe.js";
import { ChatBox } from "./chat.js";
import { HandsList } from "./hands.js";
import { ClassList } from "./roster.js";
import { TeacherPoll } from "./polls.js";
import { TeacherStage } from "./stage.js";
import { Broadcast } from "./broadcast.js";
import { QuestionQueue, SectionsTable } from "./questions.js";

/** @typedef {import("./protocol").ServerMessage} ServerMessage */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */
/** @typedef {import("./protocol").Offer} Offer */
/** @typedef {import("./protocol").Joined} Joined */

const roomEl = $("room");
const nameEl = $("name");
const countEl = $("student-count");
const endBtn = button("end-lesson");

/**
 * `section`: this class is a section of a broadcast now (its pupils watch the broadcast, which
 * this page shows instead of offering to broadcast).
 * @type {{role: string | null, name: string | null, participantId: string | null, students: number, section: boolean}}
 */
const me = { role: null, name: null, participantId: null, students: 0, section: false };
/** @type {Signaling} */
const signaling = new Signaling({ ...pageParams(), onMessage, onChange: onSignalingChange, onError });
/** @type {ChatBox} */
const chat = new ChatBox(signaling);
const polls = new TeacherPoll(signaling, render);
/** In the classroom now (the stage controls and "Remove" are enabled). */
const joined = () => pageState() === "joined" || pageState() === "connected";
/** @type {TeacherStage} */
const stage = new TeacherStage(signaling, { find: (id) => roster.find(id) || hands.find(id), inClass: joined, render });
const hands = new HandsList((id) => stage.controls(id));
/** @type {ClassList} */
const roster = new ClassList(signaling, {
  controls: (id) => stage.controls(id),
  left: (id) => {
    if (stage.invited && stage.invited.participant_id === id) stage.invited = null; // left before coming on stage
  },
  inClass: joined,
});
const broadcast = new Broadcast(signaling, { render, ended: () => signaling.over });
const questions = new QuestionQueue(signaling);
const sections = new SectionsTable();
const watched = /** @type {HTMLVideoElement} */ ($("broadcast-video"));
const publisher = broadcast.publisher;
const subscription = new Subscription(signaling, {
  onTrack: (slot, track) => {
    if (me.section && (slot === "audio" || slot === "video")) {
      const stream = /** @type {MediaStream} */ (watched.srcObject || new MediaStream());
      stream.addTrack(track);
      watched.srcObject = stream;
      watched.play().catch(() => {});
      return;
    }
    if (slot !== "stage_audio" && slot !== "stage_video") return; // the teacher's own slots stay idle
    stage.view.addTrack(track);
    stage.play();
  },
  onChange: render,
});

function pageState() {
  const s = signaling.state;
  if (s !== "joined") return s; // connecting, reconnecting, closed, error
  if (publisher.pc && publisher.media === "connected") return "connected";
  return "joined";
}

function stats() {
  return {
    state: pageState(),
    role: me.role,
    source: broadcast.source(),
    live: broadcast.live,
    publishing: broadcast.publishing,
    students: me.students,
    media: publisher.media,
    framesEncoded: publisher.framesEncoded,
    framesDecoded: 0,
    sharing: broadcast.sharing(),
    screenFramesEncoded: publisher.screenFramesEncoded,
    bytesSent: publisher.bytesSent,
    videoWidth: broadcast.preview.videoWidth,
    videoHeight: broadcast.preview.videoHeight,
    // the class
    chat: chat.received,
    roster: roster.roster.length,
    rosterTotal: roster.total,
    hands: hands.hands.length,
    poll: polls.stats(),
    reconnects: signaling.reconnects,
    reconnectAttempts: signaling.attempt, // since the last `joined`
    resumed: !!(signaling.joined && signaling.joined.resumed),
    // the student on stage, through the subscription
    subscription: subscription.media,
    subscriptions: subscription.count,
    invited: stage.invited ? stage.invited.participant_id : null,
    stage: stage.view.stats(),
  };
}

expose({ stats, dropConnection: () => signaling.dropConnection() });

function render() {
  const state = pageState();
  showState(state);
  const inClass = state === "joined" || state === "connected";
  const asTeacher = me.role === "teacher" && inClass;
  broadcast.render(asTeacher && !me.section);
  countEl.textContent = String(me.students);
  endBtn.disabled = !asTeacher;
  chat.setEnabled(inClass);
  polls.render(asTeacher, me.students);
  roster.renderButtons(asTeacher);
  stage.render(asTeacher);
}

// --- signaling -----------------------------------------------------------------------------

/**
 * The server's subscription offer: answer it (recvonly) and show what the stage slots carry.
 * @param {Offer} msg
 */
async function onOffer(msg) {
  if (msg.target !== "subscribe") return;
  if (subscription.pc) stage.view.rebase();
  // Back after a dropped connection: `stage` comes before the offer when someone is on stage.
  if (stage.view.stage && stage.view.epoch !== signaling.epoch) stage.view.set(null);
  await subscription.take(msg);
  render();
}

/** @param {Joined} msg */
function onJoined(msg) {
  if (signaling.reconnects > 0) {
    console.info(`skyclass: back in the classroom (resumed: ${msg.resumed})`);
    broadcast.rejoined(msg);
    polls.rejoined(); // the question may not have reached the server: the form comes back filled in
  }
  me.role = msg.role;
  me.name = msg.name;
  broadcast.live = !!msg.live;
  me.participantId = msg.participant_id;
  me.section = !!msg.broadcast;
  questions.canPass = me.section;
  $("broadcast-tile").hidden = !me.section;
  $("broadcast-buttons").hidden = me.section; // the class watches the host's broadcast
  $("broadcast-name").textContent = msg.broadcast || "";
  chat.selfId = msg.participant_id;
  useIceServers(msg.ice_servers || []);
  roomEl.textContent = msg.room;
  nameEl.textContent = msg.name || "";
  if (msg.role !== "teacher") {
    const q = new URLSearchParams(location.search);
    showError({ code: "wrong_page", message: `这是${msg.role}链接，请打开 This is a ${msg.role} link; open /learn?${q}`, fatal: false });
  }
}

/** @param {ServerMessage} msg */
function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      onJoined(msg);
      break;
    case "answer":
      broadcast.takeAnswer(msg);
      break;
    case "offer":
      onOffer(msg);
      break;
    case "stage":
      stage.take(msg);
      break;
    case "presence":
      me.students = Number(msg.students) || 0;
      break;
    case "broadcast":
      broadcast.live = !!msg.live;
      break;
    case "chat":
      chat.add(msg);
      break;
    case "hands":
      hands.take(msg.raised);
      break;
    case "roster":
      roster.take(msg);
      break;
    case "questions":
      questions.take(msg.waiting);
      break;
    case "question_answered":
      questions.answered.add(msg.question);
      break;
    case "sections":
      sections.take(msg);
      break;
    case "poll_results":
      polls.takeResults(msg);
      break;
    case "lesson_ended":
      showNotice("lesson_ended");
      break;
    case "seat_taken":
      // Someone opened a pupil's link while the pupil is in the lesson: a leaked link, or a
      // second device. They were refused; the teacher may revoke the link if it was not them.
      showError({
        code: "seat_taken",
        message: `${msg.name} 的链接在另一处被打开，已拒绝 ${msg.name}'s link was opened somewhere else and refused`,
        fatal: false,
      });
      break;
    case "ice":
      if (msg.target === "publish") publisher.addIce(msg);
      else if (msg.target === "subscribe") subscription.addIce(msg);
      break;
    case "error":
      // A refused publish leaves nothing to stop on the server side (a refused replacement
      // leaves the broadcast as it was).
      if (publisher.isRefusal(msg)) broadcast.refused();
      if (stage.muting) stage.muting = false;
      break;
  }
  render();
}

/**
 * A non-fatal error that belongs to one of the panel's parts; true when shown there.
 * @param {ErrorOut} msg
 * @returns {boolean}
 */
function onError(msg) {
  if (chat.takeError(msg)) return true;
  if (!publisher.isRefusal(msg) && publisher.strayIce(msg)) return true;
  if (polls.takeError(msg)) return true;
  if (msg.code === "bad_state" && roster.removing.size) roster.removing.clear(); // that student had left already
  if (msg.code === "bad_state" && stage.invited && performance.now() - stage.invited.at < 5000) {
    stage.invited = null; // the invited student had left already
    render();
  }
  return false;
}

function onSignalingChange() {
  const ended = signaling.over;
  if (ended) {
    if (publisher.pc) broadcast.teardown();
    broadcast.releaseScreen();
    broadcast.releaseCamera();
    if (subscription.pc) {
      subscription.close();
      subscription.media = "closed";
    }
    stage.view.stage = null;
    stage.invited = null;
  }
  roster.render();
  document.body.classList.toggle("ended", ended);
  render();
}

function endLesson() {
  const ok = window.confirm("结束本节课？直播会停止，所有学生都会离开。\nEnd the lesson? The broadcast stops and everyone leaves.");
  if (!ok) return;
  signaling.send({ type: "end_lesson" });
}

// --- stats pollers -------------------------------------------------------------------------

poll(() => publisher.poll());

// The subscription: frames of the student on stage.
poll(async () => {
  const slots = await subscription.inbound();
  if (!slots) return;
  stage.view.count(slots);
  if (stage.view.stage || stage.invited) render();
});

// --- start ---------------------------------------------------------------------------------

endBtn.addEventListener("click", endLesson);
hands.render();

roomEl.textContent = signaling.room || "—";
if (startPage(signaling, { path: "/teach", render })) {
  if (typeof navigator.mediaDevices?.getUserMedia === "function") broadcast.openCamera();
  else showError({ code: "no_camera", message: "navigator.mediaDevices is unavailable (HTTPS is required)", fatal: false });
}
