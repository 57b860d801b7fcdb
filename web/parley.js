// parley.js: a small client for Parley's public JSON WebSocket protocol.
//
// The reference is proto/parley/v1/client.proto (and docs/protocol.md). This
// module is what the browser client (web/app.js) uses, and any other page can
// embed it: it has no dependencies and no build step.
//
//   import { connect } from './parley.js';
//   const client = connect('ws://127.0.0.1:8080/', { token, device: 'web' });
//   client.on('message', (m) => render(m));          // once each, in order
//   client.on('stopped', ({ message }) => alert(message));
//   const ack = await client.send({ user: 'bob' }, 'hi');  // stored
//
// What it takes care of:
//   * the inbox rule: messages are applied iff inboxSeq == last + 1; older
//     ones are duplicates; a gap is held while the client syncs from `last`
//     (paging while `more`). `last` is persisted per user (localStorage), and
//     a reconnect or a reload resumes with hello{inboxSeq: last} (0
//     included), so the service replays exactly the missed messages; a new
//     device sends no inboxSeq and starts at the head;
//   * sends: every send gets a clientMsgId and stays in a pending outbox
//     (persisted per tab in sessionStorage) until its ack; after a reconnect
//     every pending send goes out again with the same clientMsgId, which the
//     service answers with the original ack and stores nothing new; edits,
//     deletes and group changes are kept and resent the same way. When a
//     new token names another user, the previous user's pending sends and
//     changes stay in storage for that user and leave the client (never
//     sent as the new user);
//   * reconnecting with jittered exponential backoff, except on the close
//     codes that say not to (4001, 4029, 4003 "no-reconnect:", and the
//     "fix the client" codes), which stop the client and say why;
//   * liveness: an application ping whenever the socket has been quiet, so a
//     dead path is noticed even though browsers hide WebSocket pings.
//
// Threading: none; everything runs on the page's event loop. 64-bit integers
// (inboxSeq, seq) are handled as JavaScript numbers, exact up to 2^53.

/** Error codes after which the same request may be retried later. */
export const RETRYABLE_ERRORS = Object.freeze([
  'ERROR_CODE_RATE_LIMITED',
  'ERROR_CODE_UNAVAILABLE',
  'ERROR_CODE_BACKPRESSURE',
]);

/**
 * Default options of {@link connect}. Durations are in milliseconds.
 * @type {Readonly<ConnectOptions>}
 */
export const DEFAULTS = Object.freeze({
  device: '',
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  backoffJitter: 0.5,
  // A connection that stayed live this long resets the backoff.
  stableMs: 5000,
  // After 1008 (policy violation) wait at least this long.
  policyBackoffMs: 10000,
  // Send an application ping when nothing arrived for this long...
  pingIntervalMs: 20000,
  // ...and give up on the socket when nothing arrives for this long after it.
  pongTimeoutMs: 10000,
  // Close and retry when no welcome arrives this long after the socket opens.
  authTimeoutMs: 15000,
  // Close and retry when a sync gets no answer for this long.
  syncTimeoutMs: 15000,
  // Messages per sync page.
  syncLimit: 200,
  // After welcome, how long the service's replay may take before the client
  // syncs on its own (the replay normally arrives right behind welcome).
  catchUpGraceMs: 2000,
  storagePrefix: 'parley.v1',
});

/**
 * Options of {@link connect}. Everything but `token` is optional; the
 * injectable parts (WebSocket, storage, timers, random) exist for tests and
 * for non-browser hosts.
 * @typedef {object} ConnectOptions
 * @property {string} [token] The JWT (sent in a hello frame, not in the URL).
 * @property {string} [device] A device name shown to operators.
 * @property {number} [backoffBaseMs] First reconnect delay before jitter.
 * @property {number} [backoffMaxMs] Largest reconnect delay before jitter.
 * @property {number} [backoffJitter] Each delay is scaled by 1 ± this.
 * @property {number} [stableMs] Live this long, and the backoff starts over.
 * @property {number} [policyBackoffMs] Minimum delay after close code 1008.
 * @property {number} [pingIntervalMs] Quiet time before an application ping.
 * @property {number} [pongTimeoutMs] Quiet time after a ping before giving up.
 * @property {number} [authTimeoutMs] Time from open to welcome.
 * @property {number} [syncTimeoutMs] Time from sync to synced.
 * @property {number} [syncLimit] Messages per sync page.
 * @property {number} [catchUpGraceMs] Time the replay after welcome may take.
 * @property {string} [storagePrefix] Prefix of the storage keys.
 * @property {string|string[]} [protocols] WebSocket subprotocol(s) to ask for
 *     (none means JSON; "parley.v1.json" names it explicitly).
 * @property {typeof WebSocket} [WebSocket] The WebSocket constructor.
 * @property {StorageLike} [storage] Where `last` is kept (localStorage).
 * @property {StorageLike} [outboxStorage] Where pending sends are kept
 *     (sessionStorage: they belong to this tab and survive its reloads).
 * @property {(fn: Function, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {() => number} [random] Uniform in [0, 1), for the jitter.
 * @property {() => number} [now] Milliseconds since the epoch.
 */

/**
 * The subset of the Web Storage API this module uses.
 * @typedef {object} StorageLike
 * @property {(key: string) => (string|null)} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/**
 * Who a message or a typing notice is for: exactly one of the two.
 * @typedef {{user: string}|{group: string}} Recipient
 */

/**
 * A stored message, normalized: 64-bit fields are numbers and fields the
 * JSON mapping omitted hold their defaults.
 * @typedef {object} Message
 * @property {number} inboxSeq Its position in this user's inbox.
 * @property {string} messageId
 * @property {string} conversation "d:<a>:<b>" or "g:<group>".
 * @property {number} seq Its position in the conversation.
 * @property {string} from The sender's user id.
 * @property {Recipient} to The recipient as the sender named it.
 * @property {string} text
 * @property {string} sentAt RFC 3339.
 * @property {string} clientMsgId The sender's id for the send ("" if none).
 * @property {string} kind "text", "edit" (changes the message `targetSeq`
 *     of its conversation to `text`), "delete" (makes it a tombstone),
 *     "groupEvent" (a change of the group, see `groupEvent`), or the enum
 *     name of a kind this version does not know.
 * @property {number} targetSeq For "edit" and "delete": the seq changed.
 * @property {string} editedAt RFC 3339 when the text was last edited ("" if
 *     never; history serves the current text).
 * @property {boolean} deleted A tombstone: deleted, its text is "".
 * @property {GroupEvent|null} groupEvent For kind "groupEvent": what changed.
 */

/**
 * A change of a group (a message of kind "groupEvent"), normalized.
 * @typedef {object} GroupEvent
 * @property {string} type "created", "membersAdded", "membersRemoved",
 *     "memberLeft", "renamed", "roleChanged", or the enum name of a type
 *     this version does not know.
 * @property {string} actor Who made it ("" for an operator).
 * @property {string[]} users The users it concerns (created: every member;
 *     added, removed, left, role changed: those), sorted.
 * @property {string} title For "created" and "renamed": the title.
 * @property {GroupRoleName} role For "roleChanged": the new role.
 */

/**
 * A member's role in a group: "member", "admin" or "owner".
 * @typedef {string} GroupRoleName
 */

/**
 * A group as getGroup answers it.
 * @typedef {object} GroupInfo
 * @property {string} id The group id (its conversation is "g:<id>").
 * @property {string} title
 * @property {Array<{user: string, role: GroupRoleName}>} members Sorted by user.
 * @property {string} createdAt RFC 3339.
 */

/**
 * One change of {@link ParleyClient#updateGroup}: exactly one key.
 * @typedef {{addMembers: string[]}|{removeMembers: string[]}|{rename: string}|
 *     {leave: true}|{setRole: {user: string, role: GroupRoleName}}} GroupChange
 */

/**
 * One entry of the conversation list, normalized.
 * @typedef {object} ConversationSummary
 * @property {string} id "d:<a>:<b>" or "g:<group>".
 * @property {'direct'|'group'} kind
 * @property {string} title The group's title or the peer's id.
 * @property {string} peer For a direct conversation: the other user.
 * @property {number} headSeq The conversation's highest seq.
 * @property {string} lastActivity RFC 3339.
 * @property {Message|null} lastMessage
 * @property {number} readSeq Up to where this user has read.
 * @property {number} unread Messages from others after readSeq (the
 *     server's count, the same on every device).
 * @property {number} peerReadSeq For a direct conversation: up to where the
 *     peer has read.
 */

/**
 * An acknowledgement: the send is durably stored.
 * @typedef {object} Ack
 * @property {string} clientMsgId
 * @property {string} messageId
 * @property {string} conversation
 * @property {number} seq
 * @property {number} inboxSeq In the sender's own inbox (0 if not given).
 * @property {string} sentAt
 */

/**
 * What a close code means for the client.
 * @typedef {object} ClosePolicy
 * @property {boolean} retry Whether to reconnect automatically.
 * @property {number} minDelayMs The least time to wait before reconnecting.
 * @property {string} message What happened, for a person.
 */

/**
 * A request the server refused (an `error` frame), as a rejection value.
 */
export class ParleyError extends Error {
  /**
   * @param {string} code An ERROR_CODE_* name, or a local code such as
   *     "STOPPED".
   * @param {string} message What went wrong.
   */
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ParleyError';
    /** @type {string} */
    this.code = code;
    /** @type {boolean} Whether the same request may succeed later. */
    this.retryable = RETRYABLE_ERRORS.includes(code);
  }
}

/**
 * Reads a 64-bit integer field of the JSON mapping (a string, a number, or
 * absent for 0).
 * @param {unknown} value
 * @returns {number}
 * @throws {RangeError} if it is not a non-negative integer below 2^53.
 */
export function toSeq(value) {
  if (value === undefined || value === null || value === '') return 0;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`not a sequence number: ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * The conversation id of two users: "d:<a>:<b>" with the ids sorted.
 * @param {string} a
 * @param {string} b
 * @returns {string}
 */
export function directConversation(a, b) {
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

/**
 * The conversation a send from `me` to `to` lands in.
 * @param {string} me The sender.
 * @param {Recipient} to
 * @returns {string}
 */
export function conversationOf(me, to) {
  return 'group' in to && to.group ? `g:${to.group}` : directConversation(me, to.user);
}

/**
 * Who `me` talks to in a conversation: {group} for "g:", {user} (the other
 * member) for "d:", or null for an id it cannot read.
 * @param {string} me
 * @param {string} conversation
 * @returns {Recipient|null}
 */
export function recipientOf(me, conversation) {
  if (conversation.startsWith('g:')) return { group: conversation.slice(2) };
  if (!conversation.startsWith('d:')) return null;
  const rest = conversation.slice(2);
  // User ids are sorted, so "d:<me>:<peer>" or "d:<peer>:<me>".
  if (rest.startsWith(`${me}:`)) return { user: rest.slice(me.length + 1) };
  if (rest.endsWith(`:${me}`)) return { user: rest.slice(0, -(me.length + 1)) };
  return null;
}

/**
 * Normalizes a `message` frame's body (or a synced message).
 * @param {any} m The JSON object.
 * @returns {Message}
 */
export function normalizeMessage(m) {
  const to = m.to && m.to.group ? { group: m.to.group } : { user: (m.to && m.to.user) || '' };
  return {
    inboxSeq: toSeq(m.inboxSeq),
    messageId: m.messageId || '',
    conversation: m.conversation || '',
    seq: toSeq(m.seq),
    from: m.from || '',
    to,
    text: m.text || '',
    sentAt: m.sentAt || '',
    clientMsgId: m.clientMsgId || '',
    kind: messageKind(m.kind),
    targetSeq: toSeq(m.targetSeq),
    editedAt: m.editedAt || '',
    deleted: Boolean(m.deleted),
    groupEvent: m.groupEvent ? normalizeGroupEvent(m.groupEvent) : null,
  };
}

const GROUP_EVENT_TYPES = Object.freeze({
  GROUP_EVENT_TYPE_CREATED: 'created',
  GROUP_EVENT_TYPE_MEMBERS_ADDED: 'membersAdded',
  GROUP_EVENT_TYPE_MEMBERS_REMOVED: 'membersRemoved',
  GROUP_EVENT_TYPE_MEMBER_LEFT: 'memberLeft',
  GROUP_EVENT_TYPE_RENAMED: 'renamed',
  GROUP_EVENT_TYPE_ROLE_CHANGED: 'roleChanged',
});

const GROUP_ROLES = Object.freeze(['GROUP_ROLE_MEMBER', 'GROUP_ROLE_ADMIN', 'GROUP_ROLE_OWNER']);
// The frames kept until acked besides sends (ParleyClient#track).
const CHANGE_KINDS = Object.freeze(['edit', 'delete', 'createGroup', 'updateGroup']);

/**
 * The short name of a GroupRole of the JSON mapping (an enum name, its
 * number, or absent for MEMBER): "member", "admin" or "owner".
 * @param {unknown} role
 * @returns {GroupRoleName}
 */
export function groupRole(role) {
  if (role === undefined || role === null) return 'member';
  const name = typeof role === 'number' ? GROUP_ROLES[role] : role;
  return GROUP_ROLES.includes(name) ? name.slice('GROUP_ROLE_'.length).toLowerCase() : String(role);
}

/**
 * Normalizes a message's `groupEvent`.
 * @param {any} e The JSON object.
 * @returns {GroupEvent}
 */
export function normalizeGroupEvent(e) {
  const names = Object.keys(GROUP_EVENT_TYPES);
  const type = typeof e.type === 'number' ? names[e.type - 1] || String(e.type) : e.type || '';
  return {
    type: GROUP_EVENT_TYPES[type] || type,
    actor: e.actor || '',
    users: (e.users || []).map(String),
    title: e.title || '',
    role: groupRole(e.role),
  };
}

/**
 * Normalizes a `group` frame's body (the answer to getGroup).
 * @param {any} g The JSON object.
 * @returns {GroupInfo}
 */
export function normalizeGroup(g) {
  return {
    id: g.id || '',
    title: g.title || '',
    members: (g.members || []).map((m) => ({ user: m.user || '', role: groupRole(m.role) })),
    createdAt: g.createdAt || '',
  };
}

/**
 * The short name of a MessageKind of the JSON mapping (an enum name, its
 * number, or absent for TEXT).
 * @param {unknown} kind
 * @returns {string}
 */
export function messageKind(kind) {
  switch (kind) {
    case undefined:
    case null:
    case 0:
    case 'MESSAGE_KIND_TEXT':
      return 'text';
    case 1:
    case 'MESSAGE_KIND_EDIT':
      return 'edit';
    case 2:
    case 'MESSAGE_KIND_DELETE':
      return 'delete';
    case 3:
    case 'MESSAGE_KIND_GROUP_EVENT':
      return 'groupEvent';
    default:
      return String(kind);
  }
}

/**
 * Normalizes a conversation list entry.
 * @param {any} c The JSON object.
 * @returns {ConversationSummary}
 */
export function normalizeSummary(c) {
  const id = c.id || '';
  return {
    id,
    kind: id.startsWith('g:') ? 'group' : 'direct',
    title: c.title || '',
    peer: c.peer || '',
    headSeq: toSeq(c.headSeq),
    lastActivity: c.lastActivity || '',
    lastMessage: c.lastMessage ? normalizeMessage(c.lastMessage) : null,
    readSeq: toSeq(c.readSeq),
    unread: toSeq(c.unread),
    peerReadSeq: toSeq(c.peerReadSeq),
  };
}

/**
 * Normalizes an `ack` frame's body.
 * @param {any} a The JSON object.
 * @returns {Ack}
 */
export function normalizeAck(a) {
  return {
    clientMsgId: a.clientMsgId || '',
    messageId: a.messageId || '',
    conversation: a.conversation || '',
    seq: toSeq(a.seq),
    inboxSeq: toSeq(a.inboxSeq),
    sentAt: a.sentAt || '',
  };
}

/**
 * The reconnect delay after `attempt` failed attempts (0 for the first
 * retry): base · 2^attempt capped at max, scaled by a uniform factor in
 * [1 - jitter, 1 + jitter) so that clients dropped together do not return
 * together.
 * @param {number} attempt
 * @param {{baseMs?: number, maxMs?: number, jitter?: number}} [options]
 * @param {() => number} [random] Uniform in [0, 1).
 * @returns {number} Milliseconds.
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const base = options.baseMs ?? DEFAULTS.backoffBaseMs;
  const max = options.maxMs ?? DEFAULTS.backoffMaxMs;
  const jitter = options.jitter ?? DEFAULTS.backoffJitter;
  const exp = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(exp * (1 - jitter + 2 * jitter * random()));
}

/**
 * What a WebSocket close code (and reason) tells the client to do, following
 * the table in proto/parley/v1/client.proto.
 * @param {number} code
 * @param {string} [reason]
 * @returns {ClosePolicy}
 */
export function closePolicy(code, reason = '') {
  const why = reason ? ` (${reason})` : '';
  switch (code) {
    case 1000:
      return { retry: false, minDelayMs: 0, message: `The server closed the connection${why}.` };
    case 1007:
    case 1009:
      return {
        retry: false,
        minDelayMs: 0,
        message: `The server refused what this client sent (close ${code}${why}); this is a client bug.`,
      };
    case 1008:
      return {
        retry: true,
        minDelayMs: DEFAULTS.policyBackoffMs,
        message: `Too many requests (close 1008${why}); reconnecting later.`,
      };
    case 4001:
      return {
        retry: false,
        minDelayMs: 0,
        message: `Sign-in refused: the token is invalid, expired or for an unknown user${why}. Get a new token.`,
      };
    case 4029:
      return {
        retry: false,
        minDelayMs: 0,
        message: `Too many sessions for this user${why}. Close another window, then reconnect.`,
      };
    case 4003: {
      if (reason.startsWith('reconnect:')) {
        return { retry: true, minDelayMs: 0, message: `Disconnected by an operator${why}; reconnecting.` };
      }
      // "no-reconnect:" and, to be safe, a reason with neither prefix.
      return { retry: false, minDelayMs: 0, message: `Disconnected by an operator${why}.` };
    }
    case 4008:
      return { retry: true, minDelayMs: 0, message: `Not authenticated in time${why}; reconnecting.` };
    default:
      // 1001 going away, 1006 dropped, 1011/1012/1013 and anything unknown.
      return { retry: true, minDelayMs: 0, message: `Connection lost (close ${code}${why}); reconnecting.` };
  }
}

/**
 * The inbox rule on its own (no I/O): which messages to apply, in order.
 * A message with inboxSeq <= last is a duplicate, last + 1 is applied (then
 * any held successors), anything higher is held until the gap is filled.
 */
export class Inbox {
  /** @param {number} [last] The highest inboxSeq already applied. */
  constructor(last = 0) {
    /** @type {number} The highest inboxSeq applied. */
    this.last = last;
    /** @type {Map<number, Message>} Messages above a gap, by inboxSeq. */
    this.held = new Map();
  }

  /**
   * Offers one message; returns the messages to apply now, in order (empty
   * for a duplicate or a held message).
   * @param {Message} message Normalized.
   * @returns {Message[]}
   */
  offer(message) {
    const s = message.inboxSeq;
    if (s <= this.last) return [];
    if (s > this.last + 1) {
      if (!this.held.has(s)) this.held.set(s, message);
      return [];
    }
    const applied = [message];
    this.last = s;
    this.held.delete(s);
    for (let next = this.held.get(this.last + 1); next; next = this.held.get(this.last + 1)) {
      this.held.delete(this.last + 1);
      applied.push(next);
      this.last += 1;
    }
    return applied;
  }

  /** @returns {boolean} Whether messages are held above a gap. */
  get hasGap() {
    return this.held.size > 0;
  }

  /**
   * Starts over at `last` (the server's inbox is behind what was stored:
   * a different server or a wiped data directory).
   * @param {number} last
   */
  reset(last) {
    this.last = last;
    this.held.clear();
  }
}

/**
 * Sends not yet acknowledged, in the order they were made. Pure data: the
 * client decides when to (re)send them.
 */
export class Outbox {
  constructor() {
    /** @type {Map<string, {clientMsgId: string, to: Recipient, text: string, createdAt: number}>} */
    this.entries = new Map();
  }

  /**
   * Adds a send unless its clientMsgId is already pending.
   * @param {{clientMsgId: string, to: Recipient, text: string, createdAt: number}} entry
   * @returns {boolean} Whether it was added.
   */
  add(entry) {
    if (this.entries.has(entry.clientMsgId)) return false;
    this.entries.set(entry.clientMsgId, entry);
    return true;
  }

  /**
   * Removes a send (acked, or failed for good).
   * @param {string} clientMsgId
   * @returns {boolean} Whether it was pending.
   */
  remove(clientMsgId) {
    return this.entries.delete(clientMsgId);
  }

  /**
   * @param {string} clientMsgId
   * @returns {boolean}
   */
  has(clientMsgId) {
    return this.entries.has(clientMsgId);
  }

  /** @returns {Array<{clientMsgId: string, to: Recipient, text: string, createdAt: number}>} In order. */
  list() {
    return [...this.entries.values()];
  }

  /** @returns {string} The pending sends, for storage. */
  serialize() {
    return JSON.stringify(this.list().map(({ clientMsgId, to, text, createdAt }) => ({ clientMsgId, to, text, createdAt })));
  }

  /**
   * Adds the sends of a {@link Outbox#serialize} string; ignores garbage.
   * @param {string|null} text
   */
  restore(text) {
    if (!text) return;
    let list;
    try {
      list = JSON.parse(text);
    } catch {
      return;
    }
    if (!Array.isArray(list)) return;
    for (const e of list) {
      if (e && typeof e.clientMsgId === 'string' && e.clientMsgId && e.to && typeof e.text === 'string') {
        const to = e.to.group ? { group: String(e.to.group) } : { user: String(e.to.user || '') };
        this.add({ clientMsgId: e.clientMsgId, to, text: e.text, createdAt: Number(e.createdAt) || 0 });
      }
    }
  }
}

/**
 * A token's claims, read without verifying it, or null if it is not a JWT.
 * @param {string} token
 * @returns {Object|null}
 */
function tokenClaims(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const json = decodeURIComponent(
      Array.from(atob(b64), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The user id (JWT "sub") of a token, read without verifying it, or null.
 * Used only to find this user's stored inbox position before the welcome.
 * @param {string} token
 * @returns {string|null}
 */
export function tokenSubject(token) {
  const sub = tokenClaims(token)?.sub;
  return typeof sub === 'string' && sub ? sub : null;
}

/**
 * The device a token was issued for (its "dev" claim, `parleyctl token USER
 * --device D`), or null. A hello's device overrides it, so a page that has
 * no device of its own should send this one.
 * @param {string} token
 * @returns {string|null}
 */
export function tokenDevice(token) {
  const dev = tokenClaims(token)?.dev;
  return typeof dev === 'string' && dev ? dev : null;
}

/**
 * The user ids of a group request: non-empty strings, without repeats.
 * @param {string} what The request, for the error.
 * @param {unknown} users
 * @param {boolean} mayBeEmpty
 * @returns {string[]}
 */
function userList(what, users, mayBeEmpty) {
  if (!Array.isArray(users) || users.some((u) => typeof u !== 'string' || u === '') || (!mayBeEmpty && users.length === 0)) {
    throw new TypeError(`${what}: members must be ${mayBeEmpty ? 'a list' : 'a non-empty list'} of user ids`);
  }
  return [...new Set(users)];
}

/**
 * A fresh clientMsgId (a random UUID where the platform has one).
 * @returns {string}
 */
export function newClientMsgId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const rnd = () => Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return `${Date.now().toString(16)}-${rnd()}-${rnd()}`;
}

function memoryStorage() {
  const map = new Map();
  return {
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
  };
}

function defaultStorage(name) {
  try {
    const s = globalThis[name];
    if (s) {
      const probe = '__parley_probe__';
      s.setItem(probe, '1');
      s.removeItem(probe);
      return s;
    }
  } catch {
    // Storage disabled (private mode, sandboxed frame): keep it in memory.
  }
  return memoryStorage();
}

/**
 * One user's connection to Parley, kept alive across drops. Create it with
 * {@link connect}.
 *
 * Events (subscribe with {@link ParleyClient#on}):
 *   - "state"        {state, attempt?, delayMs?, code?, reason?, message?}:
 *                    state is "connecting", "open" (welcome received),
 *                    "reconnecting" (waiting delayMs), "stopped" or "closed";
 *   - "welcome"      {sessionId, userId, inboxSeq, heartbeatMs};
 *   - "message"      {@link Message}: applied by the inbox rule, so each
 *                    message once and in inboxSeq order (own sends included);
 *                    kind "text" (or a kind this version does not know);
 *   - "edit"         {@link Message} of kind "edit", in the same order: the
 *                    message `targetSeq` of `conversation` now reads `text`,
 *                    edited at `sentAt` (own edits included);
 *   - "delete"       {@link Message} of kind "delete": the message
 *                    `targetSeq` of `conversation` is deleted (a tombstone);
 *   - "groupEvent"   {@link Message} of kind "groupEvent", in the same order:
 *                    `groupEvent` says how the group of `conversation`
 *                    changed (own changes included: they are fetched from
 *                    the server right after their ack);
 *   - "ack"          {@link Ack}: a pending send is stored;
 *   - "sendFailed"   {clientMsgId, code, message}: refused for good;
 *   - "receipt"      {conversation, user, seq, unread}: `user` read up to
 *                    `seq`; when `user` is this user (a read on another of
 *                    their devices) `unread` is the conversation's unread
 *                    count after it, else null;
 *   - "blocked"      {users}: the users this user blocks, sent after a
 *                    change from any of their devices (and in answer to
 *                    block and listBlocked);
 *   - "typing"       {from, conversation};
 *   - "presence"     {user, online};
 *   - "announcement" {text, sentAt};
 *   - "error"        {code, message}: an error frame not tied to a send;
 *   - "stopped"      {code, reason, message}: no more automatic reconnects;
 *   - "reset"        {from, to}: the stored position is void (the server's
 *                    data was restored from a backup, or is behind it):
 *                    what the old data gave is to be dropped; the inbox is
 *                    replayed from its start (`to` is 0).
 */
export class ParleyClient {
  /**
   * @param {string} url The gateway's WebSocket URL, e.g. "ws://host:8080/".
   * @param {ConnectOptions} options
   */
  constructor(url, options = {}) {
    this.url = url;
    /** @private */
    this.opts = { ...DEFAULTS, ...options };
    const o = this.opts;
    /** @private */
    this.WebSocketImpl = o.WebSocket || globalThis.WebSocket;
    /** @private */
    this.storage = o.storage || defaultStorage('localStorage');
    /** @private */
    this.outboxStorage = o.outboxStorage || defaultStorage('sessionStorage');
    /** @private */
    this.timers = {
      set: o.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clear: o.clearTimeout || ((h) => globalThis.clearTimeout(h)),
    };
    /** @private */
    this.random = o.random || Math.random;
    /** @private */
    this.now = o.now || (() => Date.now());
    /** @private */
    this.listeners = new Map();

    /** @type {string} The authenticated user ("" before the first welcome). */
    this.userId = '';
    /** @type {string} "connecting", "open", "reconnecting", "stopped" or "closed". */
    this.state = 'closed';
    /** @type {number} The user's inbox head, as of the last welcome or sync. */
    this.head = 0;

    /** @private */ this.inbox = new Inbox(0);
    /** @private */ this.outbox = new Outbox();
    /** @private Promise resolvers of pending sends. */ this.deferreds = new Map();
    /** @private Resend timers of sends refused with a retryable error. */ this.resendTimers = new Map();
    /** @private */ this.storageUser = null;
    /** @private */ this.storedLast = null;
    /** @private The store generation `last` belongs to ('' if unknown). */ this.storeGeneration = '';
    /** @private */ this.ws = null;
    /** @private */ this.generation = 0;
    /** @private */ this.live = false;
    /** @private */ this.liveSince = 0;
    /** @private */ this.attempt = 0;
    /** @private */ this.helloSeq = null;
    /** @private */ this.timer = { reconnect: null, auth: null, liveness: null, catchUp: null };
    /** @private */ this.syncQueue = [];
    /** @private */ this.catchUpQueued = false;
    /** @private */ this.historyFloor = null;
    /** @private */ this.historyChain = Promise.resolve();
    /** @private Highest seq marked read, per conversation. */ this.readSeqs = new Map();
    /** @private Conversations whose read is not sent yet. */ this.unsentReads = new Set();
    /** @private */ this.pingNonce = 0;
    /** @private */ this.pongWaiters = new Map();
    /** @private History waiting for the first welcome (it starts there). */ this.historyWaiters = [];
    /** @private Requests answered by a frame of their kind, one in flight at a time (errors name their requestId). */ this.queries = [];
    /** @private Numbers the queries' requestIds. */ this.requestCount = 0;
    /** @private Edits, deletes and group changes not acked yet, by clientMsgId. */ this.changes = new Map();

    const sub = tokenSubject(o.token || '');
    if (sub) this.useStorageFor(sub);
  }

  // ---------------------------------------------------------------- public

  /**
   * Subscribes to an event (see the class comment for the list).
   * @param {string} event
   * @param {(payload: any) => void} fn
   * @returns {() => void} Unsubscribes.
   */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /**
   * Unsubscribes a function given to {@link ParleyClient#on}.
   * @param {string} event
   * @param {(payload: any) => void} fn
   */
  off(event, fn) {
    const set = this.listeners.get(event);
    if (set) set.delete(fn);
  }

  /**
   * Opens the connection (done by {@link connect}; again after
   * {@link ParleyClient#close} or a stop). A token given here replaces the
   * old one, e.g. after close code 4001.
   * @param {{token?: string}} [options]
   */
  open(options = {}) {
    if (options.token) {
      this.opts.token = options.token;
      const sub = tokenSubject(options.token);
      if (sub && sub !== this.storageUser) this.useStorageFor(sub);
    }
    this.attempt = 0;
    this.openSocket();
  }

  /**
   * Closes the connection for good (no reconnect). Pending sends stay in
   * the outbox storage and go out when a client for this user opens again.
   */
  close() {
    this.teardown(true);
    this.failSyncs(new ParleyError('CLOSED', 'the client was closed'));
    this.setState('closed');
  }

  /**
   * While waiting to reconnect, reconnects now (e.g. when the browser says
   * it is back online). Does nothing in any other state.
   */
  retryNow() {
    if (this.state === 'reconnecting') {
      this.clearTimer('reconnect');
      this.openSocket();
    }
  }

  /**
   * Sends a text message. It is kept in the outbox until acknowledged, and
   * resent with the same clientMsgId after every reconnect until then.
   * @param {Recipient} to
   * @param {string} text
   * @param {{clientMsgId?: string}} [options] Give one to choose the id.
   * @returns {Promise<Ack> & {clientMsgId: string}} Resolves when the
   *     message is stored; rejects with a {@link ParleyError} when the server
   *     refuses it for good. Carries the clientMsgId for matching the
   *     message when it comes back.
   */
  send(to, text, options = {}) {
    const recipient = to && to.group ? { group: String(to.group) } : { user: String((to && to.user) || '') };
    if (!recipient.group && !recipient.user) throw new TypeError('send: `to` needs a user or a group');
    if (typeof text !== 'string' || text === '') throw new TypeError('send: `text` must be a non-empty string');
    const clientMsgId = options.clientMsgId || newClientMsgId();
    const existing = this.deferreds.get(clientMsgId);
    if (existing) return existing.promise;
    const entry = { clientMsgId, to: recipient, text, createdAt: this.now() };
    this.outbox.add(entry);
    this.persistOutbox();
    const d = this.deferredFor(clientMsgId);
    if (this.live) this.transmit({ send: { clientMsgId, to: recipient, text } });
    return d.promise;
  }

  /**
   * The sends not yet acknowledged, oldest first (including those restored
   * from a previous page load of this tab).
   * @returns {Array<{clientMsgId: string, to: Recipient, text: string, createdAt: number}>}
   */
  pending() {
    return this.outbox.list().map((e) => ({ ...e, to: { ...e.to } }));
  }

  /**
   * Marks a conversation read up to `seq` (others see a receipt). Sent now
   * when connected, else when the connection is back.
   * @param {string} conversation
   * @param {number} seq
   */
  read(conversation, seq) {
    if (seq <= (this.readSeqs.get(conversation) || 0)) return;
    this.readSeqs.set(conversation, seq);
    this.unsentReads.add(conversation);
    if (this.live) this.flushReads();
  }

  /**
   * Tells the recipient that this user is typing (dropped when offline:
   * typing notices are ephemeral).
   * @param {Recipient} to
   */
  typing(to) {
    if (!this.live) return;
    const recipient = to.group ? { group: to.group } : { user: to.user };
    this.transmit({ typing: { to: recipient } });
  }

  /**
   * Asks for stored messages of this user's inbox after `afterSeq`, one page.
   * The answer is returned as is: it does not pass through the inbox rule
   * (use it for history; the client keeps itself up to date on its own).
   * Waits for the connection if it is down.
   * @param {{afterSeq?: number, limit?: number}} [request]
   * @returns {Promise<{messages: Message[], inboxSeq: number, more: boolean}>}
   */
  sync(request = {}) {
    return this.enqueueSync(request.afterSeq || 0, request.limit || 0);
  }

  /**
   * Asks for one page of this user's conversations, the most recently active
   * first, with the server's read positions and unread counts. Waits for the
   * connection if it is down.
   * @param {{pageToken?: string, limit?: number}} [request] `pageToken` is
   *     the previous page's `nextPageToken` ("" or absent: the first page).
   * @returns {Promise<{conversations: ConversationSummary[], nextPageToken: string}>}
   *     `nextPageToken` is "" on the last page; rejects with a
   *     {@link ParleyError} when the server refuses the request.
   */
  listConversations(request = {}) {
    const frame = {};
    if (request.pageToken) frame.pageToken = request.pageToken;
    if (request.limit) frame.limit = request.limit;
    return this.query({ listConversations: frame }, 'conversations').then((c) => ({
      conversations: (c.conversations || []).map(normalizeSummary),
      nextPageToken: c.nextPageToken || '',
    }));
  }

  /**
   * Asks for one page of a conversation's history, newest last: the
   * messages with seq < `beforeSeq` (absent or 0: up to the newest), as they
   * read now (edited text with `editedAt`, tombstones with `deleted`). The
   * answer does not pass through the inbox rule. Waits for the connection
   * if it is down.
   * @param {string} conversation
   * @param {{beforeSeq?: number, limit?: number}} [request]
   * @returns {Promise<{conversation: string, messages: Message[], more: boolean}>}
   *     `more`: older messages exist; rejects with a {@link ParleyError}
   *     (e.g. ERROR_CODE_PERMISSION_DENIED for a non-member).
   */
  history(conversation, request = {}) {
    if (typeof conversation !== 'string' || conversation === '') {
      throw new TypeError('history: `conversation` must be a conversation id');
    }
    const frame = { conversation };
    if (request.beforeSeq) frame.beforeSeq = String(request.beforeSeq);
    if (request.limit) frame.limit = request.limit;
    return this.query({ history: frame }, 'history', (h) => (h.conversation || '') === conversation).then((h) => ({
      conversation,
      messages: (h.messages || []).map(normalizeMessage),
      more: Boolean(h.more),
    }));
  }

  /**
   * Changes the text of one of this user's messages. Like a send it is kept
   * until acked (in the outbox storage too) and goes out again, with the
   * same clientMsgId, after a reconnect or a reload of the page. The edit
   * comes back as an "edit" event.
   * @param {string} conversation
   * @param {number} seq The message's seq in the conversation.
   * @param {string} text The new text.
   * @param {{clientMsgId?: string}} [options]
   * @returns {Promise<Ack> & {clientMsgId: string}} Resolves when stored;
   *     rejects with a {@link ParleyError}, e.g. ERROR_CODE_FAILED_PRECONDITION
   *     when the edit window has passed or the message is deleted.
   */
  edit(conversation, seq, text, options = {}) {
    if (typeof text !== 'string' || text === '') throw new TypeError('edit: `text` must be a non-empty string');
    return this.change('edit', conversation, seq, { text }, options);
  }

  /**
   * Deletes one of this user's messages (everyone then sees a tombstone).
   * Kept until acked like {@link ParleyClient#edit}; comes back as a
   * "delete" event.
   * @param {string} conversation
   * @param {number} seq
   * @param {{clientMsgId?: string}} [options]
   * @returns {Promise<Ack> & {clientMsgId: string}}
   */
  deleteMessage(conversation, seq, options = {}) {
    return this.change('delete', conversation, seq, {}, options);
  }

  /**
   * Blocks (or, with `blocked` false, unblocks) a user: direct messages
   * between the two are refused with ERROR_CODE_BLOCKED either way, and
   * neither sees the other's presence or typing.
   * @param {string} user
   * @param {boolean} [blocked]
   * @returns {Promise<string[]>} The users blocked now.
   */
  block(user, blocked = true) {
    if (typeof user !== 'string' || user === '') throw new TypeError('block: `user` must be a user id');
    return this.query({ block: { user, blocked: Boolean(blocked) } }, 'blocked').then((b) => b.users);
  }

  /** @returns {Promise<string[]>} The users this user blocks. */
  listBlocked() {
    return this.query({ listBlocked: {} }, 'blocked').then((b) => b.users);
  }

  /**
   * Creates a group with this user as its owner. Kept until acked like
   * {@link ParleyClient#edit} (a repeat answers with the same group); every
   * member, this user included, then gets its "created" event.
   * @param {string} title 1..128 bytes.
   * @param {string[]} [members] The other members' user ids.
   * @param {{clientMsgId?: string}} [options]
   * @returns {Promise<Ack & {group: string}> & {clientMsgId: string}} The
   *     ack names the group's conversation; `group` is its id. Rejects with
   *     a {@link ParleyError}, e.g. ERROR_CODE_NOT_FOUND for a member that
   *     does not exist.
   */
  createGroup(title, members = [], options = {}) {
    if (typeof title !== 'string' || title.trim() === '') throw new TypeError('createGroup: `title` must be a non-empty string');
    const users = userList('createGroup', members, true);
    const p = this.track('createGroup', { title, members: users }, options);
    const withGroup = p.then((ack) => ({ ...ack, group: ack.conversation.replace(/^g:/, '') }));
    withGroup.clientMsgId = p.clientMsgId;
    withGroup.catch(() => {});
    return withGroup;
  }

  /**
   * Changes a group this user is a member of: add or remove members,
   * rename it, leave it, or set a member's role (who may do what:
   * docs/protocol.md). Kept until acked like {@link ParleyClient#edit};
   * everyone concerned then gets its "groupEvent".
   * @param {string} group The group id (a conversation id "g:<id>" works too).
   * @param {GroupChange} change
   * @param {{clientMsgId?: string}} [options]
   * @returns {Promise<Ack> & {clientMsgId: string}} Rejects with a
   *     {@link ParleyError}: ERROR_CODE_PERMISSION_DENIED when this user's
   *     role does not allow it, ERROR_CODE_FAILED_PRECONDITION when nothing
   *     would change or the owner leaves while others remain, ...
   */
  updateGroup(group, change, options = {}) {
    const id = typeof group === 'string' ? group.replace(/^g:/, '') : '';
    if (id === '') throw new TypeError('updateGroup: `group` must be a group id');
    const keys = change && typeof change === 'object' ? Object.keys(change) : [];
    if (keys.length !== 1) throw new TypeError('updateGroup: `change` must have exactly one key');
    const [key] = keys;
    const value = change[key];
    let body;
    switch (key) {
      case 'addMembers':
      case 'removeMembers':
        body = { [key]: { users: userList(`updateGroup ${key}`, value, false) } };
        break;
      case 'rename':
        if (typeof value !== 'string' || value.trim() === '') throw new TypeError('updateGroup: `rename` must be a non-empty string');
        body = { rename: value };
        break;
      case 'leave':
        body = { leave: {} };
        break;
      case 'setRole': {
        const role = value && typeof value.role === 'string' ? value.role.replace(/^GROUP_ROLE_/i, '').toUpperCase() : '';
        if (!value || typeof value.user !== 'string' || value.user === '' || !GROUP_ROLES.includes(`GROUP_ROLE_${role}`)) {
          throw new TypeError('updateGroup: `setRole` needs a user and a role ("member", "admin" or "owner")');
        }
        body = { setRole: { user: value.user, role: `GROUP_ROLE_${role}` } };
        break;
      }
      default:
        throw new TypeError(`updateGroup: unknown change ${JSON.stringify(key)}`);
    }
    return this.track('updateGroup', { group: id, ...body }, options);
  }

  /**
   * Asks for a group's title, members and roles, as they are now. Waits for
   * the connection if it is down.
   * @param {string} group The group id (or its conversation id "g:<id>").
   * @returns {Promise<GroupInfo>} Rejects with a {@link ParleyError}:
   *     ERROR_CODE_PERMISSION_DENIED for a non-member, NOT_FOUND.
   */
  getGroup(group) {
    const id = typeof group === 'string' ? group.replace(/^g:/, '') : '';
    if (id === '') throw new TypeError('getGroup: `group` must be a group id');
    return this.query({ getGroup: { group: id } }, 'group', (g) => (g.id || '') === id).then(normalizeGroup);
  }

  /**
   * Loads the page of inbox messages just below what this client has loaded
   * so far (history: everything up to the inbox position this client started
   * at). The inbox holds every conversation's messages, so a page may hold
   * few of any one conversation: call again while `done` is false.
   * @param {number} [limit] Inbox messages per page.
   * @returns {Promise<{messages: Message[], done: boolean}>}
   */
  loadOlder(limit = 100) {
    const run = async () => {
      if (this.historyFloor === null) {
        await new Promise((resolve, reject) => this.historyWaiters.push({ resolve, reject }));
      }
      const floor = this.historyFloor;
      if (floor <= 1) return { messages: [], done: true };
      const count = Math.min(limit, floor - 1);
      const after = floor - 1 - count;
      const messages = [];
      let cursor = after;
      // A server may cap the page below `count`: page on until the floor.
      while (cursor < floor - 1) {
        const page = await this.enqueueSync(cursor, floor - 1 - cursor);
        const inRange = page.messages.filter((m) => m.inboxSeq > cursor && m.inboxSeq < floor);
        if (inRange.length === 0) break;
        messages.push(...inRange);
        cursor = inRange[inRange.length - 1].inboxSeq;
        if (!page.more) break;
      }
      this.historyFloor = after + 1;
      for (const m of messages) this.settleOwn(m);
      return { messages, done: this.historyFloor <= 1 };
    };
    const result = this.historyChain.then(run, run);
    this.historyChain = result.catch(() => {});
    return result;
  }

  /**
   * Sends an application ping now.
   * @returns {Promise<number>} The round trip in milliseconds, when the pong
   *     arrives (after a reconnect if the connection is down; never if the
   *     client stops).
   */
  ping() {
    const nonce = `p${++this.pingNonce}`;
    const started = this.now();
    return new Promise((resolve) => {
      this.pongWaiters.set(nonce, () => resolve(this.now() - started));
      if (this.live) this.transmit({ ping: { nonce } });
    });
  }

  /** @returns {number} The highest inboxSeq applied (the inbox rule's last). */
  get lastInboxSeq() {
    return this.inbox.last;
  }

  // --------------------------------------------------------------- private

  /** @private */
  emit(event, payload) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        // A listener's bug must not break the protocol state machine.
        globalThis.console?.error?.('parley: listener for', event, 'threw', e);
      }
    }
  }

  /** @private */
  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  /** @private */
  key(what) {
    return `${this.opts.storagePrefix}:${this.storageUser}:${what}`;
  }

  /**
   * @private Switches storage to `user`: loads their `last`, outbox and
   * pending changes.
   */
  useStorageFor(user) {
    if (this.storageUser && this.storageUser !== user) this.dropPendingOf(this.storageUser);
    this.storageUser = user;
    let stored = null;
    try {
      const raw = this.storage.getItem(this.key('inboxSeq'));
      if (raw !== null) stored = toSeq(raw);
    } catch {
      stored = null;
    }
    this.storedLast = stored;
    this.inbox.reset(stored || 0);
    try {
      this.storeGeneration = this.storage.getItem(this.key('storeGeneration')) || '';
    } catch {
      this.storeGeneration = '';
    }
    try {
      this.outbox.restore(this.outboxStorage.getItem(this.key('outbox')));
    } catch {
      // Unreadable storage: nothing to restore.
    }
    for (const e of this.outbox.list()) this.deferredFor(e.clientMsgId);
    this.persistOutbox();
    try {
      const list = JSON.parse(this.outboxStorage.getItem(this.key('changes')) || '[]');
      if (Array.isArray(list)) for (const e of list) this.restoreChange(e);
    } catch {
      // Unreadable storage: nothing to restore.
    }
    this.persistChanges();
  }

  /**
   * @private Stores `last`. Another tab of the same user may be ahead, so
   * the stored value only moves back when `force`d (after a reset).
   */
  persistLast(force = false) {
    this.storedLast = this.inbox.last;
    if (!this.storageUser) return;
    try {
      const k = this.key('inboxSeq');
      const current = Number(this.storage.getItem(k)) || 0;
      if (force || this.inbox.last > current || this.storage.getItem(k) === null) {
        this.storage.setItem(k, String(this.inbox.last));
      }
    } catch {
      // Quota or disabled storage: the position lives in memory only.
    }
  }

  /** @private */
  persistOutbox() {
    if (!this.storageUser) return;
    try {
      if (this.outbox.entries.size === 0) this.outboxStorage.removeItem(this.key('outbox'));
      else this.outboxStorage.setItem(this.key('outbox'), this.outbox.serialize());
    } catch {
      // As above.
    }
  }

  /** @private */
  deferredFor(clientMsgId) {
    let d = this.deferreds.get(clientMsgId);
    if (d) return d;
    d = {};
    d.promise = new Promise((resolve, reject) => {
      d.resolve = resolve;
      d.reject = reject;
    });
    d.promise.clientMsgId = clientMsgId;
    // Callers need not await every send: a refusal is also an event.
    d.promise.catch(() => {});
    this.deferreds.set(clientMsgId, d);
    return d;
  }

  /** @private */
  clearTimer(name) {
    if (this.timer[name] !== null) {
      this.timers.clear(this.timer[name]);
      this.timer[name] = null;
    }
  }

  /** @private */
  openSocket() {
    this.teardown(false);
    const gen = ++this.generation;
    this.setState('connecting', { attempt: this.attempt });
    let ws;
    try {
      ws = this.opts.protocols
        ? new this.WebSocketImpl(this.url, this.opts.protocols)
        : new this.WebSocketImpl(this.url);
    } catch (e) {
      this.dropped(gen, 1006, String(e && e.message ? e.message : e));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      // null: a new device, which starts at the head (no inboxSeq at all).
      this.helloSeq = this.storedLast === null ? null : this.inbox.last;
      const hello = { token: this.opts.token || '' };
      if (this.opts.device) hello.device = this.opts.device;
      if (this.helloSeq !== null) hello.inboxSeq = String(this.helloSeq);
      if (this.helloSeq !== null && this.storeGeneration) hello.storeGeneration = this.storeGeneration;
      this.transmit({ hello });
      this.timer.auth = this.timers.set(() => {
        this.timer.auth = null;
        this.dropped(gen, 4008, 'no welcome in time');
      }, this.opts.authTimeoutMs);
    };
    ws.onmessage = (ev) => {
      if (gen !== this.generation) return;
      this.received(ev.data);
    };
    ws.onclose = (ev) => this.dropped(gen, ev.code, ev.reason || '');
    ws.onerror = () => {};
  }

  /**
   * @private Stops timers and closes and forgets the socket: events of the
   * old socket are ignored from here on (they carry an old generation).
   */
  teardown(final) {
    for (const name of Object.keys(this.timer)) this.clearTimer(name);
    for (const h of this.resendTimers.values()) this.timers.clear(h);
    this.resendTimers.clear();
    const ws = this.ws;
    this.ws = null;
    this.live = false;
    this.generation += 1;
    for (const s of [...this.syncQueue, ...this.queries]) {
      if (s.timer !== undefined) this.timers.clear(s.timer);
      s.timer = undefined;
      s.sent = false;
    }
    if (ws) {
      try {
        if (final) ws.close(1000, 'client closed');
        else ws.close();
      } catch {
        // Already closed.
      }
    }
  }

  /** @private Rejects every sync and history request still waiting. */
  failSyncs(error) {
    const queue = [...this.syncQueue, ...this.historyWaiters, ...this.queries];
    this.syncQueue = [];
    this.historyWaiters = [];
    this.queries = [];
    for (const s of queue) s.reject(error);
  }

  /** @private */
  dropped(gen, code, reason) {
    if (gen !== this.generation) return;
    const liveFor = this.live ? this.now() - this.liveSince : 0;
    this.teardown(false);
    if (liveFor >= this.opts.stableMs) this.attempt = 0;
    const policy = closePolicy(code, reason);
    if (!policy.retry) {
      this.failSyncs(new ParleyError('STOPPED', policy.message));
      this.setState('stopped', { code, reason, message: policy.message });
      this.emit('stopped', { code, reason, message: policy.message });
      return;
    }
    const minDelay = code === 1008 ? this.opts.policyBackoffMs : policy.minDelayMs;
    const delayMs = Math.max(
      minDelay,
      backoffDelay(
        this.attempt,
        { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs, jitter: this.opts.backoffJitter },
        this.random,
      ),
    );
    this.attempt += 1;
    this.setState('reconnecting', { attempt: this.attempt, delayMs, code, reason, message: policy.message });
    this.timer.reconnect = this.timers.set(() => {
      this.timer.reconnect = null;
      this.openSocket();
    }, delayMs);
  }

  /** @private */
  transmit(frame) {
    if (!this.ws) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** @private Any inbound frame proves the path works: re-arm liveness. */
  armLiveness() {
    this.clearTimer('liveness');
    if (!this.live) return;
    const gen = this.generation;
    this.timer.liveness = this.timers.set(() => {
      this.timer.liveness = null;
      this.transmit({ ping: { nonce: `l${++this.pingNonce}` } });
      this.timer.liveness = this.timers.set(() => {
        this.timer.liveness = null;
        this.dropped(gen, 1006, 'no answer to ping');
      }, this.opts.pongTimeoutMs);
    }, this.opts.pingIntervalMs);
  }

  /** @private */
  received(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      this.emit('error', { code: 'CLIENT_BAD_FRAME', message: 'unparseable frame from the server' });
      return;
    }
    if (this.live) this.armLiveness();
    if (frame.welcome) this.onWelcome(frame.welcome);
    else if (frame.message) this.onMessage(normalizeMessage(frame.message));
    else if (frame.ack) this.onAck(normalizeAck(frame.ack));
    else if (frame.synced) this.onSynced(frame.synced);
    else if (frame.error) this.onError(frame.error, frame.requestId);
    else if (frame.pong) this.onPong(frame.pong);
    else if (frame.conversations) this.answerQuery('conversations', frame.conversations);
    else if (frame.history) this.answerQuery('history', frame.history);
    else if (frame.group) this.answerQuery('group', frame.group);
    else if (frame.blocked) {
      const blocked = { users: (frame.blocked.users || []).map(String) };
      this.answerQuery('blocked', blocked);
      this.emit('blocked', blocked);
    } else if (frame.receipt) {
      const r = frame.receipt;
      const user = r.user || '';
      // The JSON mapping omits a 0: on the reader's own sessions absent is 0.
      const unread = user === this.userId ? toSeq(r.unread) : null;
      this.emit('receipt', { conversation: r.conversation || '', user, seq: toSeq(r.seq), unread });
    } else if (frame.typing) {
      this.emit('typing', { from: frame.typing.from || '', conversation: frame.typing.conversation || '' });
    } else if (frame.presence) {
      this.emit('presence', { user: frame.presence.user || '', online: Boolean(frame.presence.online) });
    } else if (frame.announcement) {
      this.emit('announcement', { text: frame.announcement.text || '', sentAt: frame.announcement.sentAt || '' });
    }
  }

  /** @private */
  onWelcome(w) {
    this.clearTimer('auth');
    const userId = w.userId || '';
    if (userId && userId !== this.storageUser) this.useStorageFor(userId);
    this.userId = userId;
    this.head = toSeq(w.inboxSeq);
    const generation = w.storeGeneration || '';
    const restored = Boolean(this.storeGeneration && generation && generation !== this.storeGeneration);
    if (this.storedLast === null) {
      // A new device starts at the head; older messages are history.
      this.inbox.reset(this.head);
      this.persistLast();
    } else if (restored || this.inbox.last > this.head) {
      // Positions from other data: the service replays the inbox from its
      // start, behind this welcome.
      const from = this.inbox.last;
      this.inbox.reset(0);
      this.helloSeq = 0;
      this.persistLast(true);
      this.historyFloor = null;
      this.emit('reset', { from, to: 0 });
    }
    if (generation !== this.storeGeneration) {
      this.storeGeneration = generation;
      try {
        this.storage.setItem(this.key('storeGeneration'), generation);
      } catch {
        // As for persistLast.
      }
    }
    if (this.historyFloor === null) this.historyFloor = this.inbox.last + 1;
    this.live = true;
    this.liveSince = this.now();
    this.armLiveness();
    const welcome = {
      sessionId: w.sessionId || '',
      userId,
      inboxSeq: this.head,
      heartbeatMs: Number(w.heartbeatMs) || 0,
    };
    this.setState('open', { welcome });
    this.emit('welcome', welcome);
    const waiters = this.historyWaiters;
    this.historyWaiters = [];
    for (const w of waiters) w.resolve();

    // Everything not acknowledged goes out again, same clientMsgId, in order.
    for (const e of this.outbox.list()) {
      this.transmit({ send: { clientMsgId: e.clientMsgId, to: e.to, text: e.text } });
    }
    for (const c of this.changes.values()) this.transmit(c.frame);
    this.flushReads();
    this.pumpQueries();
    for (const [nonce] of this.pongWaiters) this.transmit({ ping: { nonce } });
    this.pumpSync();
    if (this.head > this.inbox.last) {
      if (this.helloSeq === this.inbox.last) {
        // The service replays what was missed right behind the welcome; sync
        // only if that does not arrive.
        this.scheduleCatchUpCheck();
      } else {
        this.catchUp();
      }
    }
  }

  /** @private */
  scheduleCatchUpCheck() {
    this.clearTimer('catchUp');
    const gen = this.generation;
    this.timer.catchUp = this.timers.set(() => {
      this.timer.catchUp = null;
      if (gen === this.generation && (this.inbox.last < this.head || this.inbox.hasGap)) this.catchUp();
    }, this.opts.catchUpGraceMs);
  }

  /** @private */
  apply(messages) {
    if (messages.length === 0) return;
    this.persistLast();
    if (this.inbox.last > this.head) this.head = this.inbox.last;
    for (const m of messages) {
      if (m.kind === 'edit') this.emit('edit', m);
      else if (m.kind === 'delete') this.emit('delete', m);
      else if (m.kind === 'groupEvent') this.emit('groupEvent', m);
      else this.emit('message', m);
    }
  }

  /** @private A message of ours that is stored settles its pending send. */
  settleOwn(m) {
    if (!m.clientMsgId || m.from !== this.userId) return;
    const change = this.changes.get(m.clientMsgId);
    // Applied by the caller, by the inbox rule like any message.
    if (change) this.settleChange(change, { ...normalizeAck(m), inboxSeq: m.inboxSeq });
    if (!this.outbox.has(m.clientMsgId)) return;
    this.settleAck({
      clientMsgId: m.clientMsgId,
      messageId: m.messageId,
      conversation: m.conversation,
      seq: m.seq,
      inboxSeq: m.inboxSeq,
      sentAt: m.sentAt,
    });
  }

  /** @private */
  settleAck(ack) {
    const entry = this.outbox.entries.get(ack.clientMsgId);
    if (!entry) return null;
    this.outbox.remove(ack.clientMsgId);
    this.persistOutbox();
    const h = this.resendTimers.get(ack.clientMsgId);
    if (h !== undefined) {
      this.timers.clear(h);
      this.resendTimers.delete(ack.clientMsgId);
    }
    const d = this.deferreds.get(ack.clientMsgId);
    this.deferreds.delete(ack.clientMsgId);
    this.emit('ack', ack);
    if (d) d.resolve(ack);
    return entry;
  }

  /** @private */
  onMessage(m) {
    this.settleOwn(m);
    this.apply(this.inbox.offer(m));
    if (this.inbox.hasGap) this.catchUp();
  }

  /** @private */
  onAck(ack) {
    const change = this.changes.get(ack.clientMsgId);
    if (change) {
      this.settleChange(change, ack);
      if (ack.inboxSeq === 0) return;
      if (change.kind === 'createGroup' || change.kind === 'updateGroup') {
        // The event is in our own inbox at ack.inboxSeq, but what it says
        // (who was added, skipping members already in) is the server's:
        // fetch it by the inbox rule.
        if (ack.inboxSeq > this.head) this.head = ack.inboxSeq;
        if (ack.inboxSeq > this.inbox.last) this.catchUp();
        return;
      }
      // Our edit or delete is in our own inbox at ack.inboxSeq, like a send.
      this.apply(
        this.inbox.offer({
          inboxSeq: ack.inboxSeq,
          messageId: ack.messageId,
          conversation: ack.conversation,
          seq: ack.seq,
          from: this.userId,
          to: recipientOf(this.userId, ack.conversation) || { user: '' },
          text: change.frame[change.kind].text || '',
          sentAt: ack.sentAt,
          clientMsgId: ack.clientMsgId,
          kind: change.kind,
          targetSeq: change.seq,
          editedAt: '',
          deleted: false,
        }),
      );
      if (this.inbox.hasGap) this.scheduleCatchUpCheck();
      return;
    }
    const entry = this.settleAck(ack);
    // A repeat ack (the send went out twice around a reconnect): done already.
    if (!entry || ack.inboxSeq === 0) return;
    // The send is in our own inbox at ack.inboxSeq; apply it by the rule so
    // it need not wait for a message frame (if one comes, it is a duplicate).
    this.apply(
      this.inbox.offer({
        inboxSeq: ack.inboxSeq,
        messageId: ack.messageId,
        conversation: ack.conversation,
        seq: ack.seq,
        from: this.userId,
        to: entry.to,
        text: entry.text,
        sentAt: ack.sentAt,
        clientMsgId: ack.clientMsgId,
      }),
    );
    // The frames in between are normally on their way: sync only if not.
    if (this.inbox.hasGap) this.scheduleCatchUpCheck();
  }

  /** @private Syncs from `last` by the inbox rule (one at a time). */
  catchUp() {
    if (this.catchUpQueued) return;
    this.catchUpQueued = true;
    this.clearTimer('catchUp');
    const before = this.inbox.last;
    // Handled synchronously on the synced frame, before any later frame.
    this.queueSync(before, this.opts.syncLimit,
      (page) => {
        this.catchUpQueued = false;
        for (const m of page.messages) this.settleOwn(m);
        for (const m of page.messages) this.apply(this.inbox.offer(m));
        if (page.inboxSeq > this.head) this.head = page.inboxSeq;
        const progressed = this.inbox.last > before;
        if (page.more && progressed) this.catchUp();
        else if (this.inbox.hasGap || this.inbox.last < this.head) {
          if (progressed) this.catchUp();
          else this.scheduleCatchUpCheck();
        }
      },
      () => {
        // The connection dropped; the next welcome starts over.
        this.catchUpQueued = false;
      },
    );
  }

  /** @private */
  enqueueSync(afterSeq, limit) {
    return new Promise((resolve, reject) => this.queueSync(afterSeq, limit, resolve, reject));
  }

  /** @private */
  queueSync(afterSeq, limit, resolve, reject) {
    this.syncQueue.push({ afterSeq, limit, resolve, reject, sent: false });
    this.pumpSync();
  }

  /**
   * @private Synced frames carry no request id, so one sync is in flight at
   * a time and answers match requests in order; a sync left unanswered
   * drops the socket (which forgets answers owed on it).
   */
  pumpSync() {
    const head = this.syncQueue[0];
    if (!head || head.sent || !this.live) return;
    const frame = { afterSeq: String(head.afterSeq) };
    if (head.limit > 0) frame.limit = head.limit;
    if (!this.transmit({ sync: frame })) return;
    head.sent = true;
    const gen = this.generation;
    head.timer = this.timers.set(() => this.dropped(gen, 1006, 'no answer to sync'), this.opts.syncTimeoutMs);
  }

  /** @private */
  onSynced(s) {
    const head = this.syncQueue[0];
    if (!head || !head.sent) return;
    this.syncQueue.shift();
    this.timers.clear(head.timer);
    const messages = (s.messages || []).map(normalizeMessage);
    head.resolve({ messages, inboxSeq: toSeq(s.inboxSeq), more: Boolean(s.more) });
    this.pumpSync();
  }

  /** @private */
  onError(e, requestId = '') {
    const code = e.code || 'ERROR_CODE_UNSPECIFIED';
    const message = e.message || '';
    const id = e.clientMsgId || '';
    if (id && this.changes.has(id)) {
      this.changeRefused(this.changes.get(id), code, message);
      return;
    }
    if (!id && this.queryRefused(code, message, requestId)) return;
    if (!id || !this.outbox.has(id)) {
      this.emit('error', { code, message });
      return;
    }
    if (RETRYABLE_ERRORS.includes(code)) {
      const entry = this.outbox.entries.get(id);
      entry.attempts = (entry.attempts || 0) + 1;
      const delay = backoffDelay(
        entry.attempts - 1,
        { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs, jitter: this.opts.backoffJitter },
        this.random,
      );
      const old = this.resendTimers.get(id);
      if (old !== undefined) this.timers.clear(old);
      const gen = this.generation;
      this.resendTimers.set(
        id,
        this.timers.set(() => {
          this.resendTimers.delete(id);
          // On a new socket the welcome has resent it already.
          if (gen === this.generation && this.outbox.has(id)) {
            this.transmit({ send: { clientMsgId: id, to: entry.to, text: entry.text } });
          }
        }, delay),
      );
      return;
    }
    this.outbox.remove(id);
    this.persistOutbox();
    const d = this.deferreds.get(id);
    this.deferreds.delete(id);
    this.emit('sendFailed', { clientMsgId: id, code, message });
    if (d) d.reject(new ParleyError(code, message));
  }

  /**
   * @private Sends `frame` with a requestId (one in flight at a time, like
   * sync) and resolves with the body of the `answer` frame
   * that `matches`. Re-sent after a reconnect; an unanswered one drops the
   * socket.
   */
  query(frame, answer, matches = () => true) {
    return new Promise((resolve, reject) => {
      const requestId = `q${++this.requestCount}`;
      frame = { ...frame, requestId };
      this.queries.push({ frame, requestId, answer, matches, resolve, reject, sent: false, attempts: 0 });
      this.pumpQueries();
    });
  }

  /** @private */
  pumpQueries() {
    const head = this.queries[0];
    if (!head || head.sent || !this.live) return;
    if (!this.transmit(head.frame)) return;
    head.sent = true;
    const gen = this.generation;
    const what = Object.keys(head.frame)[0];
    head.timer = this.timers.set(() => this.dropped(gen, 1006, `no answer to ${what}`), this.opts.syncTimeoutMs);
  }

  /** @private Resolves the query in flight if `body` answers it. */
  answerQuery(answer, body) {
    const head = this.queries[0];
    if (!head || !head.sent || head.answer !== answer || !head.matches(body)) return;
    this.queries.shift();
    this.timers.clear(head.timer);
    head.resolve(body);
    this.pumpQueries();
  }

  /**
   * @private An error frame naming the requestId of the query in flight (or
   * naming none, from a service older than request ids) refuses that query:
   * retried later if retryable, else rejected.
   * @returns {boolean} Whether a query took it.
   */
  queryRefused(code, message, requestId) {
    const head = this.queries[0];
    if (!head || !head.sent || head.timer === undefined) return false;
    if (requestId && requestId !== head.requestId) return false;
    this.timers.clear(head.timer);
    if (RETRYABLE_ERRORS.includes(code)) {
      const gen = this.generation;
      head.attempts += 1;
      // Stays sent (nothing else goes out meanwhile) until the retry.
      head.timer = undefined;
      this.timers.set(() => {
        if (gen !== this.generation || this.queries[0] !== head) return;
        head.sent = false;
        this.pumpQueries();
      }, this.retryDelay(head.attempts - 1));
      return true;
    }
    this.queries.shift();
    head.reject(new ParleyError(code, message));
    this.pumpQueries();
    return true;
  }

  /** @private */
  retryDelay(attempt) {
    return backoffDelay(
      attempt,
      { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs, jitter: this.opts.backoffJitter },
      this.random,
    );
  }

  /** @private Queues an edit or a delete (kind) of conversation's seq. */
  change(kind, conversation, seq, extra, options) {
    if (typeof conversation !== 'string' || conversation === '') {
      throw new TypeError(`${kind}: \`conversation\` must be a conversation id`);
    }
    if (!Number.isSafeInteger(seq) || seq <= 0) throw new TypeError(`${kind}: \`seq\` must be a positive integer`);
    return this.track(kind, { conversation, seq: String(seq), ...extra }, options, seq);
  }

  /**
   * @private Sends the frame `kind` with `body` and a clientMsgId, kept
   * until its ack (resent after a reconnect) or its refusal.
   */
  track(kind, body, options, seq = 0) {
    const clientMsgId = options.clientMsgId || newClientMsgId();
    const existing = this.changes.get(clientMsgId);
    if (existing) return existing.promise;
    const c = { kind, seq, clientMsgId, attempts: 0 };
    c.frame = { [kind]: { clientMsgId, ...body } };
    c.promise = new Promise((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.promise.clientMsgId = clientMsgId;
    c.promise.catch(() => {});
    this.changes.set(clientMsgId, c);
    this.persistChanges();
    if (this.live) this.transmit(c.frame);
    return c.promise;
  }

  /**
   * @private Keeps a change restored from storage (after a reload): it goes
   * out again on the next welcome, and its ack or its event settles it.
   */
  restoreChange(e) {
    if (!e || typeof e.clientMsgId !== 'string' || !e.clientMsgId || this.changes.has(e.clientMsgId)) return;
    const kind = String(e.kind);
    if (!CHANGE_KINDS.includes(kind) || !e.frame || typeof e.frame[kind] !== 'object' || e.frame[kind] === null) return;
    if (e.frame[kind].clientMsgId !== e.clientMsgId) return;
    const c = { kind, seq: Number(e.seq) || 0, clientMsgId: e.clientMsgId, attempts: 0, frame: { [kind]: e.frame[kind] } };
    c.promise = new Promise((resolve, reject) => {
      c.resolve = resolve;
      c.reject = reject;
    });
    c.promise.clientMsgId = c.clientMsgId;
    c.promise.catch(() => {});
    this.changes.set(c.clientMsgId, c);
  }

  /** @private Stores the pending changes beside the outbox. */
  persistChanges() {
    if (!this.storageUser) return;
    try {
      const k = this.key('changes');
      if (this.changes.size === 0) this.outboxStorage.removeItem(k);
      else {
        const list = [...this.changes.values()].map(({ kind, seq, clientMsgId, frame }) => ({ kind, seq, clientMsgId, frame }));
        this.outboxStorage.setItem(k, JSON.stringify(list));
      }
    } catch {
      // Quota or disabled storage: the changes live in memory only.
    }
  }

  /**
   * @private The client now speaks for another user: the previous user's
   * pending sends and changes stay in storage under that user (they go out
   * when a client for that user opens again) and leave this client, their
   * promises rejected with "USER_CHANGED"; never sent as the new user.
   */
  dropPendingOf(previous) {
    const why = new ParleyError('USER_CHANGED', `kept for ${previous}; it goes out when a client for ${previous} opens again`);
    for (const h of this.resendTimers.values()) this.timers.clear(h);
    this.resendTimers.clear();
    for (const d of this.deferreds.values()) d.reject(why);
    this.deferreds.clear();
    for (const c of this.changes.values()) c.reject(why);
    this.changes.clear();
    this.outbox = new Outbox();
  }

  /** @private */
  settleChange(c, ack) {
    this.changes.delete(c.clientMsgId);
    this.persistChanges();
    const h = this.resendTimers.get(c.clientMsgId);
    if (h !== undefined) {
      this.timers.clear(h);
      this.resendTimers.delete(c.clientMsgId);
    }
    c.resolve(ack);
  }

  /** @private */
  changeRefused(c, code, message) {
    if (!RETRYABLE_ERRORS.includes(code)) {
      this.changes.delete(c.clientMsgId);
      this.persistChanges();
      c.reject(new ParleyError(code, message));
      return;
    }
    c.attempts += 1;
    const gen = this.generation;
    const old = this.resendTimers.get(c.clientMsgId);
    if (old !== undefined) this.timers.clear(old);
    this.resendTimers.set(
      c.clientMsgId,
      this.timers.set(() => {
        this.resendTimers.delete(c.clientMsgId);
        // On a new socket the welcome has resent it already.
        if (gen === this.generation && this.changes.has(c.clientMsgId)) this.transmit(c.frame);
      }, this.retryDelay(c.attempts - 1)),
    );
  }

  /** @private */
  onPong(p) {
    const waiter = this.pongWaiters.get(p.nonce || '');
    if (waiter) {
      this.pongWaiters.delete(p.nonce);
      waiter();
    }
  }

  /** @private */
  flushReads() {
    for (const conversation of [...this.unsentReads]) {
      const seq = this.readSeqs.get(conversation);
      if (this.transmit({ read: { conversation, seq: String(seq) } })) this.unsentReads.delete(conversation);
    }
  }
}

/**
 * Connects to a Parley gateway and stays connected (see
 * {@link ParleyClient} for the events and the guarantees).
 * @param {string} url The WebSocket URL, e.g. "ws://127.0.0.1:8080/".
 * @param {ConnectOptions} options At least `token`.
 * @returns {ParleyClient}
 */
export function connect(url, options) {
  const client = new ParleyClient(url, options);
  client.open();
  return client;
}
