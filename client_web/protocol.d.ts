// The signaling messages of docs/protocol.md (server/signaling/protocol.py), as the pages read them.
// Types only: nothing here runs in the browser.

export type Role = "teacher" | "student" | "inspector" | "admin";

/** The names a `publish` gives its m-lines (`tracks`). */
export type TrackName = "audio" | "video" | "video_low" | "screen";

/** What each m-line of the subscription offer carries (`slots`). */
export type Slot = "audio" | "video" | "screen" | "stage_audio" | "stage_video";

export interface LessonRecording {
  id: string;
  url: string;
  kind?: "video" | "audio";
  duration_s?: number | null;
  poster_url?: string | null;
}

export interface Lesson {
  mode: "live" | "recorded";
  subject: string;
  class_name: string;
  recording: LessonRecording | null;
  /** The slot, epoch seconds: a recorded slot plays in step. */
  starts_at: number;
  ends_at: number;
}

export interface NextLesson {
  subject: string;
  starts_at: number;
}

export interface Joined {
  type: "joined";
  participant_id: string;
  room: string;
  role: Role;
  name: string;
  live: boolean;
  lesson?: Lesson | null;
  resumed?: boolean;
  hand?: boolean;
  hls?: string | null;
  resume?: string;
  server_time?: number;
  next_lesson?: NextLesson | null;
  ice_servers?: RTCIceServer[];
  /** This room is a part of this broadcast (大课堂) now: its members watch the broadcast. */
  broadcast?: string | null;
  /** The class's name when the part is a class (a section); none for a node's pupils without one. */
  section?: string | null;
}

export interface SeatTaken {
  type: "seat_taken";
  participant_id: string;
  name: string;
}

export interface ChatOut {
  type: "chat";
  from_id: string;
  name: string;
  role: Role;
  text: string;
  at: number;
}

export interface HandOut {
  participant_id: string;
  name: string;
  at: number;
}

export interface Hands {
  type: "hands";
  raised: HandOut[];
}

export interface RosterEntry {
  participant_id: string;
  name: string;
  role: Role;
  hand: boolean;
  away: boolean;
}

export interface Roster {
  type: "roster";
  participants: RosterEntry[];
  total: number;
}

export interface PollOut {
  type: "poll";
  poll_id: string;
  question: string;
  options: string[];
  answered?: number | null;
}

export interface PollResults {
  type: "poll_results";
  poll_id: string;
  question: string;
  options: string[];
  counts: number[];
  answered: number;
  final: boolean;
}

export interface PollClosed {
  type: "poll_closed";
  poll_id: string;
}

export interface PollOpened {
  type: "poll_opened";
  poll_id: string;
}

export interface Invited {
  type: "invited";
}

export interface StageOut {
  type: "stage";
  participant_id: string | null;
  name: string | null;
  muted?: boolean;
}

export interface Removed {
  type: "removed";
  reason: string;
}

export interface LessonEnded {
  type: "lesson_ended";
}

export interface Offer {
  type: "offer";
  target: "subscribe";
  sdp: string;
  slots?: string[];
}

export interface PublishAnswer {
  type: "answer";
  target: "publish";
  sdp: string;
}

export interface IceOut {
  type: "ice";
  target: "publish" | "subscribe";
  candidate: string | null;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
}

export interface Broadcast {
  type: "broadcast";
  live: boolean;
}

export interface Quality {
  type: "quality";
  layer: "high" | "low" | "still";
  reason: string;
}

export interface Presence {
  type: "presence";
  students: number;
}

export interface Pong {
  type: "pong";
}

/** A server error, or the same shape made up by a page (its own codes: see dom.js). */
export interface ErrorOut {
  type?: "error";
  code: string;
  message: string;
  fatal?: boolean;
  retry_after?: number | null;
}

export interface QuestionOut {
  question_id: string;
  name: string;
  section: string;
  text: string;
  at: number;
  answer: string;
  answered: boolean;
  passed: boolean;
}

export interface Questions {
  type: "questions";
  waiting: QuestionOut[];
}

export interface QuestionAnswered {
  type: "question_answered";
  question: QuestionOut;
}

export interface SectionRow {
  part: string;
  label: string;
  pupils: number;
  hands: number;
  questions: number;
  poll_counts: number[];
}

export interface Sections {
  type: "sections";
  rows: SectionRow[];
  pupils: number;
  hands: number;
}

export type ServerMessage =
  | Joined
  | Questions
  | QuestionAnswered
  | Sections
  | SeatTaken
  | ChatOut
  | Hands
  | Roster
  | PollOut
  | PollResults
  | PollClosed
  | PollOpened
  | Invited
  | StageOut
  | Removed
  | LessonEnded
  | Offer
  | PublishAnswer
  | IceOut
  | Broadcast
  | Quality
  | Presence
  | Pong
  | (ErrorOut & { type: "error" });

/** What the pages send (client → server). */
export type ClientMessage =
  | { type: "join"; room: string; token: string; delivery?: "auto" | "webrtc" | "hls"; resume?: string }
  | { type: "publish"; sdp: string; tracks: TrackName[] }
  | { type: "unpublish" }
  | { type: "ask"; text: string }
  | { type: "pass_question" | "dismiss_question"; question_id: string }
  | { type: "answer_question"; question_id: string; answer: string }
  | { type: "data_saver"; on: boolean }
  | {
      type: "qoe";
      fps: number;
      freezes: number;
      longest_freeze_s: number;
      concealed: number;
      path: "direct" | "relay" | "hls" | "recorded" | "audio";
      period_s: number;
      layer?: "high" | "low" | "still";
      rtt_ms?: number;
      loss?: number;
    }
  | { type: "subscribe" }
  | { type: "answer"; target: "subscribe"; sdp: string }
  | { type: "ice"; target: "publish" | "subscribe"; candidate: string | null; sdpMid: string | null; sdpMLineIndex: number | null }
  | { type: "chat"; text: string }
  | { type: "hand"; raised: boolean }
  | { type: "poll_open"; question: string; options: string[] }
  | { type: "poll_answer"; poll_id: string; choice: number }
  | { type: "poll_close"; poll_id: string; show: boolean }
  | { type: "remove"; participant_id: string }
  | { type: "invite"; participant_id: string }
  | { type: "end_turn" }
  | { type: "mute"; participant_id: string; muted: boolean }
  | { type: "end_lesson" }
  | { type: "ping" }
  | { type: "leave" };
