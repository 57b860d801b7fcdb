// app.js: Parley's browser chat page (web/index.html), on top of parley.js.
//
// What the page keeps, and where it comes from:
//   * the conversation list: the server's (listConversations, paged, asked
//     again after every (re)connect), with its unread counts and read
//     positions, which are the same on every device; kept current live: a
//     new message bumps its conversation to the top and counts as unread
//     unless the conversation is open, a read on another device of this
//     user arrives as a receipt carrying the new unread count;
//   * messages: each conversation's history from the server (history, paged
//     backwards by seq as the person scrolls up), plus what parley.js applies
//     live by the inbox rule ("message", "edit" and "delete" events);
//   * own sends: shown at once as "pending" (parley.js keeps them in its
//     outbox across reconnects and reloads), "sent" on ack (stored),
//     "delivered" once the recipient has had a live session since (presence:
//     the service pushes every stored message to every live session), "read"
//     once the peer's read position covers it;
//   * the blocked users (listBlocked, and the server's pushes after a change);
//   * groups: each group's members and roles from getGroup (asked when the
//     group is opened and again after each of its events), and its events
//     ("groupEvent", and in history) shown as centered lines; an event that
//     removes this user marks the group as left (no more sending).
// Messages are keyed by (sender's clientMsgId) for own sends and by
// messageId otherwise, so a message that arrives live, in history and as an
// ack is one message on screen, ordered by its conversation seq.

import { connect, conversationOf, recipientOf, tokenDevice, tokenSubject } from './parley.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'parley.app:token';
const DEVICE_KEY = 'parley.app:device';
const TYPING_SHOWN_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;
const HISTORY_PAGE = 50;
const LIST_PAGE = 50;

/** @type {import('./parley.js').ParleyClient|null} */
let client = null;
let me = '';
/** @type {Map<string, Conversation>} */
const conversations = new Map();
/** clientMsgId -> conversation id of an own send. */
const ownSends = new Map();
/** user -> online */
const presence = new Map();
/** Users this user blocks. */
let blocked = new Set();
let activeId = null;
/** The conversation list's next page ('' when there is none). */
let listToken = '';
let listPages = 0;
let listLoading = false;
/** The own message being edited in the composer: {conversation, key}. */
let editing = null;
/** Whether the open group's member panel is shown. */
let groupPanelOpen = false;
/** The group panel's signature when its member list was last built. */
let groupPanelSig = '';
let lastTypingSent = 0;
let renderQueued = false;
let scrollIntent = 'auto';

/**
 * @typedef {object} Record
 * @property {string} key
 * @property {string} clientMsgId
 * @property {string} messageId
 * @property {number} seq 0 while pending.
 * @property {string} from
 * @property {string} text
 * @property {string} sentAt
 * @property {string} editedAt "" if never edited.
 * @property {boolean} deleted A tombstone.
 * @property {number} createdAt
 * @property {'pending'|'stored'|'failed'} status
 * @property {string} [error]
 */

/**
 * @typedef {object} Conversation
 * @property {string} id
 * @property {import('./parley.js').Recipient} to
 * @property {string} title
 * @property {Map<string, Record>} records
 * @property {number} headSeq The highest seq known (from the list or live).
 * @property {number} readSeq Up to where this user has read (the server's).
 * @property {number} unread The server's unread count, kept current live.
 * @property {Map<string, number>} peerReads Up to where others have read.
 * @property {number} deliveredSeq Own messages up to here were delivered.
 * @property {Map<string, number>} typing user -> until when (ms).
 * @property {number} lastAt Last activity, for ordering the list.
 * @property {string} preview
 * @property {number} previewSeq The seq the preview shows.
 * @property {boolean} historyLoaded Whether its newest page was loaded.
 * @property {number} historyBefore The lowest seq history returned (the
 *     next page is below it; edit and delete events count, though not shown).
 * @property {boolean} historyMore Whether older messages are on the server.
 * @property {boolean} historyLoading
 * @property {string} refusal Why the last send was refused (blocked), or "".
 * @property {{members: Map<string, string>}|null} group A group's members
 *     and their roles ("owner", "admin", "member"), once getGroup answered.
 * @property {boolean} groupLoading
 * @property {boolean} groupStale Ask getGroup again when the answer is in.
 * @property {string} left Why this user may no longer use the group ("" if
 *     they may).
 * @property {string} groupError The last refused group change, or "".
 */

// ------------------------------------------------------------- state

/**
 * The conversation with this id, created on first use.
 * @param {string} id
 * @param {import('./parley.js').Recipient} [to] When the id alone is unclear.
 * @returns {Conversation|null}
 */
function conversationFor(id, to) {
  let conv = conversations.get(id);
  if (conv) return conv;
  const recipient = to || recipientOf(me, id);
  if (!recipient) return null;
  conv = {
    id,
    to: recipient,
    title: recipient.group ? `#${recipient.group}` : recipient.user,
    records: new Map(),
    headSeq: 0,
    readSeq: 0,
    unread: 0,
    peerReads: new Map(),
    deliveredSeq: 0,
    typing: new Map(),
    lastAt: 0,
    preview: '',
    previewSeq: 0,
    historyLoaded: false,
    historyBefore: 0,
    historyMore: true,
    historyLoading: false,
    refusal: '',
    group: null,
    groupLoading: false,
    groupStale: false,
    left: '',
    groupError: '',
  };
  conversations.set(id, conv);
  return conv;
}

function recipientOfMessage(m) {
  if (m.to.group) return { group: m.to.group };
  return { user: m.from === me ? m.to.user : m.from };
}

function keyOf(m) {
  return m.from === me && m.clientMsgId ? `c:${m.clientMsgId}` : `m:${m.messageId}`;
}

function previewText(conv, rec) {
  const who = rec.from === me ? 'You: ' : conv.to.group ? `${rec.from}: ` : '';
  return `${who}${rec.deleted ? 'Message deleted' : rec.text}`;
}

/** Makes `rec` the list's preview and activity if it is the newest. */
function touch(conv, rec) {
  const at = Date.parse(rec.sentAt) || rec.createdAt || 0;
  if (at >= conv.lastAt || (rec.seq && rec.seq >= conv.previewSeq)) {
    conv.lastAt = Math.max(conv.lastAt, at);
    conv.preview = previewText(conv, rec);
    conv.previewSeq = rec.seq;
  }
}

/** Takes a conversation list entry from the server. */
function addSummary(s) {
  const recipient = s.kind === 'group' ? { group: s.id.slice(2) } : { user: s.peer || recipientOf(me, s.id)?.user || '' };
  const conv = conversationFor(s.id, recipient);
  if (!conv) return;
  // The group's or the peer's display name.
  if (s.title && s.title !== (conv.to.group || conv.to.user)) conv.title = s.title;
  conv.headSeq = Math.max(conv.headSeq, s.headSeq);
  conv.readSeq = s.readSeq;
  conv.unread = s.unread;
  if (conv.to.user && s.peerReadSeq) {
    conv.peerReads.set(conv.to.user, Math.max(conv.peerReads.get(conv.to.user) || 0, s.peerReadSeq));
  }
  conv.lastAt = Math.max(conv.lastAt, Date.parse(s.lastActivity) || 0);
  if (s.lastMessage && s.lastMessage.seq >= conv.previewSeq) {
    const m = s.lastMessage;
    conv.preview = previewText(conv, { from: m.from, text: m.text, deleted: m.deleted });
    conv.previewSeq = m.seq;
  }
}

/** Adds a stored text message (live or from history); idempotent. */
function addMessage(m, { live = false } = {}) {
  const conv = conversationFor(m.conversation, recipientOfMessage(m));
  if (!conv) return null;
  const key = keyOf(m);
  // One message per seq, whichever way it came (history may not carry the
  // clientMsgId an own send is keyed by).
  const rec = conv.records.get(key) || (m.seq && recordAt(conv, m.seq)) || { key, createdAt: Date.now() };
  Object.assign(rec, {
    clientMsgId: m.clientMsgId,
    messageId: m.messageId,
    seq: m.seq,
    from: m.from,
    text: m.text,
    sentAt: m.sentAt,
    editedAt: m.editedAt,
    deleted: m.deleted,
    status: 'stored',
  });
  conv.records.set(rec.key, rec);
  if (live && m.seq > conv.headSeq) {
    // New since the list was read: it counts, once.
    conv.headSeq = m.seq;
    if (m.from !== me && m.seq > conv.readSeq) conv.unread += 1;
  }
  if (m.from !== me) conv.typing.delete(m.from);
  touch(conv, rec);
  if (m.from === me && conv.to.user && presence.get(conv.to.user)) {
    conv.deliveredSeq = Math.max(conv.deliveredSeq, m.seq);
  }
  scheduleRender();
  return conv;
}

function recordAt(conv, seq) {
  for (const r of conv.records.values()) if (r.seq === seq) return r;
  return null;
}

/** An edit or a delete (a message of that kind) changes its target. */
function applyChange(m) {
  const conv = conversations.get(m.conversation);
  if (!conv) return;
  if (m.seq > conv.headSeq) conv.headSeq = m.seq;
  const rec = recordAt(conv, m.targetSeq);
  if (rec) {
    if (m.kind === 'delete') Object.assign(rec, { deleted: true, text: '' });
    else if (!rec.deleted) Object.assign(rec, { text: m.text, editedAt: m.sentAt });
  }
  if (conv.previewSeq === m.targetSeq) {
    conv.preview = previewText(conv, rec || { from: m.from, text: m.text, deleted: m.kind === 'delete' });
  }
  scheduleRender();
}

/** A user as an event line names them. */
function nameOf(user) {
  return user === me ? 'you' : user;
}

/** Starts a sentence: "you" becomes "You"; user ids stay as they are. */
function capitalized(text) {
  return text.startsWith('you') ? `Y${text.slice(1)}` : text;
}

/** "bob", "bob and carol", "bob, carol and dave". */
function namesOf(users) {
  const names = users.map(nameOf);
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** What a group event says, as a line of the conversation. */
function eventText(ev) {
  const actor = ev.actor ? capitalized(nameOf(ev.actor)) : 'An operator';
  switch (ev.type) {
    case 'created': {
      const others = ev.users.filter((u) => u !== ev.actor);
      // An operator's group may have no title.
      const title = ev.title ? ` “${ev.title}”` : '';
      return `${actor} created the group${title}${others.length ? ` with ${namesOf(others)}` : ''}`;
    }
    case 'membersAdded':
      return `${actor} added ${namesOf(ev.users)}`;
    case 'membersRemoved':
      return `${actor} removed ${namesOf(ev.users)}`;
    case 'memberLeft':
      return `${capitalized(namesOf(ev.users))} left`;
    case 'renamed':
      return `${actor} renamed the group to “${ev.title}”`;
    case 'roleChanged': {
      const who = namesOf(ev.users);
      if (ev.role === 'owner') return `${actor} made ${who} the owner`;
      if (ev.role === 'admin') return `${actor} made ${who} an admin`;
      return `${actor} removed ${who} as admin`;
    }
    default:
      return 'The group changed';
  }
}

/** Adds a group event as a line of its conversation (live or history); idempotent. */
function addEventRecord(m) {
  const conv = conversationFor(m.conversation, { group: m.conversation.slice(2) });
  if (!conv || !m.groupEvent) return null;
  const key = `e:${m.messageId || m.seq}`;
  if (!conv.records.has(key)) {
    conv.records.set(key, {
      key, kind: 'event', clientMsgId: '', messageId: m.messageId, seq: m.seq, from: m.from, text: eventText(m.groupEvent),
      sentAt: m.sentAt, editedAt: '', deleted: false, createdAt: Date.now(), status: 'stored',
    });
  }
  conv.headSeq = Math.max(conv.headSeq, m.seq);
  scheduleRender();
  return conv;
}

/** A live group event: its line, and what it changes in the group. */
function applyGroupEvent(m) {
  const conv = addEventRecord(m);
  if (!conv) return;
  const ev = m.groupEvent;
  if ((ev.type === 'created' || ev.type === 'renamed') && ev.title) conv.title = ev.title;
  const members = conv.group && conv.group.members;
  if (members) {
    if (ev.type === 'created') {
      members.clear();
      for (const u of ev.users) members.set(u, u === ev.actor ? 'owner' : 'member');
    } else if (ev.type === 'membersAdded') {
      for (const u of ev.users) if (!members.has(u)) members.set(u, 'member');
    } else if (ev.type === 'membersRemoved' || ev.type === 'memberLeft') {
      for (const u of ev.users) members.delete(u);
    } else if (ev.type === 'roleChanged') {
      for (const u of ev.users) members.set(u, ev.role);
      if (ev.role === 'owner' && ev.actor) members.set(ev.actor, 'admin');
    }
  }
  const concernsMe = ev.users.includes(me);
  if (concernsMe && (ev.type === 'created' || ev.type === 'membersAdded') && conv.left) {
    // Back in: the server serves the group's history again.
    conv.left = '';
    conv.historyLoaded = false;
    conv.historyMore = true;
    if (conv.id === activeId) loadHistory(conv);
  }
  if (concernsMe && ev.type === 'membersRemoved') conv.left = `${ev.actor || 'An operator'} removed you from this group.`;
  if (concernsMe && ev.type === 'memberLeft') conv.left = 'You left this group.';
  if (conv.left) {
    conv.group = null;
    if (editing && editing.conversation === conv.id) stopEditing();
  }
  conv.preview = conv.records.get(`e:${m.messageId || m.seq}`).text;
  conv.previewSeq = m.seq;
  conv.lastAt = Math.max(conv.lastAt, Date.parse(m.sentAt) || Date.now());
  // Members and roles as the server has them now (the event says what
  // changed; getGroup says what is).
  if (!conv.left) loadGroup(conv);
  scheduleRender();
}

/** Asks the server for a group's members and roles (one request at a time per group). */
async function loadGroup(conv) {
  if (!client || !conv.to.group) return;
  if (conv.groupLoading) {
    conv.groupStale = true;
    return;
  }
  const c = client;
  conv.groupLoading = true;
  try {
    const info = await c.getGroup(conv.to.group);
    if (c !== client) return;
    conv.group = { members: new Map(info.members.map((m) => [m.user, m.role])) };
    if (info.title) conv.title = info.title;
    conv.left = '';
  } catch (e) {
    if (c !== client) return;
    if (e.code === 'ERROR_CODE_PERMISSION_DENIED') {
      conv.group = null;
      conv.left = conv.left || 'You are not a member of this group.';
    } else if (e.code === 'ERROR_CODE_NOT_FOUND') {
      conv.group = null;
      conv.left = 'There is no such group.';
    }
  } finally {
    if (c === client) {
      conv.groupLoading = false;
      if (conv.groupStale) {
        conv.groupStale = false;
        loadGroup(conv);
      }
      scheduleRender();
    }
  }
}

/** This user's role in a group ("" if unknown or not a member). */
function myRole(conv) {
  return (conv.group && conv.group.members.get(me)) || '';
}

/** The state shown on an own message. */
function displayState(conv, rec) {
  if (rec.from !== me) return 'received';
  if (rec.status !== 'stored') return rec.status;
  for (const [user, seq] of conv.peerReads) if (user !== me && seq >= rec.seq) return 'read';
  if (conv.deliveredSeq >= rec.seq) return 'delivered';
  return 'sent';
}

function readersOf(conv, rec) {
  return [...conv.peerReads].filter(([u, s]) => u !== me && s >= rec.seq).map(([u]) => u);
}

function maxSeq(conv) {
  let s = conv.headSeq;
  for (const r of conv.records.values()) s = Math.max(s, r.seq);
  return s;
}

/** Marks the open conversation read when the person can see it. */
function markRead() {
  const conv = activeId && conversations.get(activeId);
  if (!conv || document.visibilityState !== 'visible' || !client || !conv.historyLoaded) return;
  const seq = maxSeq(conv);
  if (conv.unread === 0 && seq <= conv.readSeq) return;
  conv.readSeq = Math.max(conv.readSeq, seq);
  conv.unread = 0;
  client.read(conv.id, conv.readSeq);
  scheduleRender();
}

function isBlocked(conv) {
  return Boolean(conv && conv.to.user && blocked.has(conv.to.user));
}

// ------------------------------------------------------------- client

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

function start(token, device) {
  me = tokenSubject(token) || '';
  client = connect(wsUrl(), { token, device: device || tokenDevice(token) || 'browser' });
  showApp();

  // Sends still pending from before a reload of this tab.
  for (const e of client.pending()) addPending(e.clientMsgId, e.to, e.text, e.createdAt);

  client.on('state', onState);
  client.on('welcome', onWelcome);
  client.on('message', (m) => {
    if (m.kind !== 'text') return; // kinds this page does not show
    const conv = addMessage(m, { live: true });
    if (conv && conv.id === activeId && m.from !== me) markRead();
  });
  client.on('edit', applyChange);
  client.on('delete', applyChange);
  client.on('groupEvent', applyGroupEvent);
  client.on('ack', (a) => {
    const convId = ownSends.get(a.clientMsgId);
    let conv = convId && conversations.get(convId);
    const rec = conv && conv.records.get(`c:${a.clientMsgId}`);
    if (!rec) return;
    if (a.conversation && a.conversation !== conv.id) {
      // The service names the conversation; follow it.
      conv.records.delete(rec.key);
      conv = conversationFor(a.conversation, conv.to);
      conv.records.set(rec.key, rec);
      ownSends.set(a.clientMsgId, conv.id);
    }
    Object.assign(rec, { messageId: a.messageId, seq: a.seq, sentAt: a.sentAt, status: 'stored' });
    conv.headSeq = Math.max(conv.headSeq, a.seq);
    conv.refusal = '';
    if (conv.to.user && presence.get(conv.to.user)) conv.deliveredSeq = Math.max(conv.deliveredSeq, a.seq);
    touch(conv, rec);
    scheduleRender();
  });
  client.on('sendFailed', (f) => {
    const conv = conversations.get(ownSends.get(f.clientMsgId));
    const rec = conv && conv.records.get(`c:${f.clientMsgId}`);
    if (rec) Object.assign(rec, { status: 'failed', error: humanError(f.code, f.message) });
    if (rec && conv.preview === previewText(conv, rec)) conv.preview = `⚠ Not sent: ${rec.text}`;
    if (conv && f.code === 'ERROR_CODE_BLOCKED') conv.refusal = f.message || 'This user does not accept your messages.';
    scheduleRender();
  });
  client.on('receipt', (r) => {
    const conv = conversationFor(r.conversation);
    if (!conv) return;
    if (r.user === me) {
      // Read on another device: the server says what is left unread.
      conv.readSeq = Math.max(conv.readSeq, r.seq);
      if (r.unread !== null) conv.unread = r.unread;
    } else {
      conv.peerReads.set(r.user, Math.max(conv.peerReads.get(r.user) || 0, r.seq));
      conv.deliveredSeq = Math.max(conv.deliveredSeq, r.seq);
    }
    scheduleRender();
  });
  client.on('blocked', (b) => {
    blocked = new Set(b.users);
    for (const conv of conversations.values()) if (!isBlocked(conv) && conv.refusal && !conv.to.group) conv.refusal = '';
    scheduleRender();
  });
  client.on('typing', (t) => {
    if (t.from === me) return;
    const conv = conversationFor(t.conversation);
    if (!conv) return;
    conv.typing.set(t.from, Date.now() + TYPING_SHOWN_MS);
    scheduleRender();
    setTimeout(scheduleRender, TYPING_SHOWN_MS + 50);
  });
  client.on('presence', (p) => {
    presence.set(p.user, p.online);
    if (p.online) {
      for (const conv of conversations.values()) {
        if (conv.to.user !== p.user) continue;
        for (const r of conv.records.values()) {
          if (r.from === me && r.status === 'stored') conv.deliveredSeq = Math.max(conv.deliveredSeq, r.seq);
        }
      }
    }
    scheduleRender();
  });
  client.on('announcement', (a) => {
    $('announcement-text').textContent = a.text;
    $('announcement').hidden = false;
  });
  client.on('error', (e) => flash(humanError(e.code, e.message)));
  client.on('reset', () => {
    // What this page holds counts in the old data's seqs: start over from the
    // server (the welcome that follows lists the conversations again).
    conversations.clear();
    ownSends.clear();
    editing = null;
    scheduleRender();
    flash("The server's data was restored from a backup; reloading your messages from the server.");
  });
  client.on('stopped', (s) => {
    if (s.code === 4001) {
      signOut(s.message);
    }
  });
}

function addPending(clientMsgId, to, text, createdAt) {
  const conv = conversationFor(conversationOf(me, to), to);
  if (!conv) return;
  const key = `c:${clientMsgId}`;
  if (!conv.records.has(key)) {
    conv.records.set(key, {
      key, clientMsgId, messageId: '', seq: 0, from: me, text, sentAt: '', editedAt: '', deleted: false, createdAt, status: 'pending',
    });
  }
  ownSends.set(clientMsgId, conv.id);
  touch(conv, conv.records.get(key));
  scheduleRender();
}

function onWelcome(w) {
  if (w.userId) me = w.userId;
  $('me').textContent = me;
  // The server's list and positions, fresh after every (re)connect: reads
  // made elsewhere meanwhile are in it.
  loadConversations(true);
  const c = client;
  client.listBlocked().then(
    (users) => {
      if (c !== client) return;
      blocked = new Set(users);
      scheduleRender();
    },
    () => {},
  );
  const conv = activeId && conversations.get(activeId);
  if (conv && !conv.historyLoaded) loadHistory(conv);
  if (conv && conv.to.group && !conv.left) loadGroup(conv);
  markRead();
}

/** Loads the first page of the conversation list (`first`) or the next one. */
async function loadConversations(first = false) {
  if (!client || (!first && (listLoading || !listToken))) return;
  const c = client;
  listLoading = true;
  scheduleRender();
  try {
    const page = await c.listConversations({ pageToken: first ? '' : listToken, limit: LIST_PAGE });
    if (c !== client) return;
    for (const s of page.conversations) addSummary(s);
    // A refreshed first page keeps the place of pages loaded after it.
    if (!first || listPages <= 1) listToken = page.nextPageToken;
    listPages = first ? Math.max(listPages, 1) : listPages + 1;
    markRead();
  } catch (e) {
    if (c === client && e.code !== 'STOPPED' && e.code !== 'CLOSED') flash(`Could not load your conversations: ${e.message}`);
  } finally {
    if (c === client) {
      listLoading = false;
      scheduleRender();
    }
  }
}

/** Loads the conversation's newest page of history, or the page before what is loaded. */
async function loadHistory(conv) {
  if (!client || conv.historyLoading || (conv.historyLoaded && !conv.historyMore)) return;
  if (conv.left) {
    // The server serves a group's history to its members only.
    conv.historyLoaded = true;
    conv.historyMore = false;
    return;
  }
  const c = client;
  const beforeSeq = conv.historyLoaded ? conv.historyBefore : 0;
  conv.historyLoading = true;
  scheduleRender();
  try {
    const page = await c.history(conv.id, { beforeSeq, limit: HISTORY_PAGE });
    if (c !== client) return;
    for (const m of page.messages) {
      if (m.kind === 'text') addMessage(m);
      else if (m.kind === 'groupEvent') addEventRecord(m);
    }
    if (page.messages.length > 0) conv.historyBefore = page.messages[0].seq;
    conv.historyMore = page.more && page.messages.length > 0;
    conv.historyLoaded = true;
    if (beforeSeq) scrollIntent = 'keep';
  } catch (e) {
    if (c !== client) return;
    if (e.code === 'ERROR_CODE_NOT_FOUND') {
      // A conversation with no message yet.
      conv.historyLoaded = true;
      conv.historyMore = false;
    } else if (e.code === 'ERROR_CODE_PERMISSION_DENIED' && conv.to.group) {
      // Not (or no longer) a member: getGroup says so in the header.
      conv.historyLoaded = true;
      conv.historyMore = false;
      loadGroup(conv);
    } else if (e.code !== 'STOPPED' && e.code !== 'CLOSED') {
      // What arrives live still shows (and is marked read); "Load older"
      // asks again.
      conv.historyLoaded = true;
      flash(`Could not load messages: ${reasonOf(e)}`);
    }
  } finally {
    if (c === client) {
      conv.historyLoading = false;
      markRead();
      scheduleRender();
    }
  }
}

function onState(s) {
  const status = $('status');
  const action = $('status-action');
  status.dataset.state = s.state;
  action.hidden = true;
  switch (s.state) {
    case 'connecting':
      status.textContent = 'Connecting…';
      break;
    case 'open':
      status.textContent = 'Connected';
      break;
    case 'reconnecting':
      // Presence is news from the server: while cut off it is unknown.
      presence.clear();
      status.textContent = `Offline · retrying in ${Math.ceil(s.delayMs / 1000)} s`;
      status.title = s.message || '';
      action.textContent = 'Retry now';
      action.onclick = () => client.retryNow();
      action.hidden = false;
      break;
    case 'stopped':
      presence.clear();
      status.textContent = s.message;
      action.textContent = 'Reconnect';
      action.onclick = () => client.open();
      action.hidden = false;
      break;
    case 'closed':
      status.textContent = 'Signed out';
      break;
    default:
      status.textContent = s.state;
  }
  scheduleRender();
}

function humanError(code, message) {
  const names = {
    ERROR_CODE_NOT_FOUND: 'No such user or group',
    ERROR_CODE_PERMISSION_DENIED: 'Not allowed',
    ERROR_CODE_INVALID_ARGUMENT: 'Invalid request',
    ERROR_CODE_TOO_LARGE: 'Too large',
    ERROR_CODE_BLOCKED: 'Blocked',
    ERROR_CODE_FAILED_PRECONDITION: 'Not possible now',
  };
  const head = names[code] || code.replace(/^ERROR_CODE_/, '').toLowerCase().replace(/_/g, ' ');
  return message ? `${head}: ${message}` : head;
}

/** The server's reason of a ParleyError, without the code in front. */
function reasonOf(e) {
  return humanError(e.code || 'ERROR', String(e.message || '').replace(/^[A-Z_]+: /, ''));
}

/** Shows a short-lived notice (one at a time: a new one replaces the old). */
function flash(text) {
  document.querySelector('.toast')?.remove();
  const el = document.createElement('div');
  el.className = 'toast';
  el.setAttribute('role', 'alert');
  el.textContent = text;
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

// ------------------------------------------------------------- views

function showApp() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = me;
  scheduleRender();
}

function showSignIn(error) {
  $('app').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.textContent = error || '';
  err.hidden = !error;
  $('token-input').focus();
}

function signOut(error) {
  if (client) client.close();
  client = null;
  sessionStorage.removeItem(TOKEN_KEY);
  conversations.clear();
  ownSends.clear();
  presence.clear();
  blocked = new Set();
  activeId = null;
  listToken = '';
  listPages = 0;
  listLoading = false;
  editing = null;
  groupPanelOpen = false;
  me = '';
  document.body.classList.remove('chat-open');
  showSignIn(error);
}

function setActive(id) {
  if (editing && editing.conversation !== id) stopEditing();
  if (id !== activeId) groupPanelOpen = false;
  activeId = id;
  document.body.classList.toggle('chat-open', Boolean(id));
  scrollIntent = 'bottom';
  scheduleRender();
  if (!id) return;
  const conv = conversations.get(id);
  if (conv && !conv.historyLoaded) loadHistory(conv);
  if (conv && conv.to.group && !conv.left) loadGroup(conv);
  markRead();
  $('composer-input').focus();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  // Not requestAnimationFrame: it does not run in background tabs, and the
  // state must stay current there too.
  setTimeout(() => {
    renderQueued = false;
    render();
  }, 0);
}

function typingText(conv) {
  const now = Date.now();
  const who = [...conv.typing].filter(([, until]) => until > now).map(([u]) => u);
  if (who.length === 0) return '';
  return `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…`;
}

function presenceOf(conv) {
  if (!conv.to.user || !presence.has(conv.to.user)) return null;
  return presence.get(conv.to.user);
}

function formatTime(sentAt) {
  const d = new Date(sentAt);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The local calendar day of a record ("" while pending: today). */
function dayOf(rec) {
  const d = new Date(rec.sentAt || rec.createdAt || Date.now());
  return Number.isNaN(d.getTime()) ? '' : `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

function dayLabel(rec) {
  const d = new Date(rec.sentAt || rec.createdAt || Date.now());
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], {
    weekday: 'long',
    month: 'long',
    day: 'numeric',
    year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric',
  });
}

function render() {
  if ($('app').hidden) return;
  renderList();
  renderChat();
}

function renderList() {
  const ul = $('conversations');
  let total = 0;
  for (const conv of conversations.values()) total += conv.unread;
  document.title = total ? `(${total}) Parley` : 'Parley';
  const focused = document.activeElement?.dataset?.conversation;
  const sorted = [...conversations.values()].sort((a, b) => b.lastAt - a.lastAt || a.title.localeCompare(b.title));
  ul.replaceChildren(
    ...sorted.map((conv) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'conversation';
      b.dataset.conversation = conv.id;
      const unread = conv.unread;
      b.dataset.unread = String(unread);
      b.dataset.left = String(Boolean(conv.left));
      if (conv.id === activeId) b.setAttribute('aria-current', 'true');
      const online = presenceOf(conv);
      const dot = document.createElement('span');
      dot.className = `dot${online === true ? ' online' : ''}`;
      dot.hidden = online === null;
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = conv.title;
      const preview = document.createElement('span');
      preview.className = 'preview';
      const typing = typingText(conv);
      preview.textContent = typing || (isBlocked(conv) ? 'Blocked' : conv.preview);
      preview.classList.toggle('typing', Boolean(typing));
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.testid = 'unread';
      badge.textContent = unread > 99 ? '99+' : String(unread);
      badge.hidden = unread === 0;
      b.setAttribute(
        'aria-label',
        `${conv.title}${unread ? `, ${unread} unread` : ''}${isBlocked(conv) ? ', blocked' : ''}${conv.left ? ', left' : ''}`,
      );
      b.append(dot, title, badge, preview);
      b.addEventListener('click', () => setActive(conv.id));
      li.append(b);
      return li;
    }),
  );
  $('no-conversations').hidden = conversations.size > 0 || listLoading;
  const more = $('more-conversations');
  more.hidden = !listToken;
  more.disabled = listLoading;
  more.textContent = listLoading ? 'Loading…' : 'More conversations';
  if (focused) ul.querySelector(`[data-conversation="${CSS.escape(focused)}"]`)?.focus();
}

function renderChat() {
  const conv = activeId && conversations.get(activeId);
  $('chat-empty').hidden = Boolean(conv);
  $('chat-open').hidden = !conv;
  if (!conv) return;
  $('chat').dataset.conversation = conv.id;
  $('chat-title').textContent = conv.title;
  const online = presenceOf(conv);
  const dot = $('chat-presence');
  dot.hidden = online === null;
  dot.className = `dot${online ? ' online' : ''}`;
  const typing = typingText(conv);
  const sub = $('chat-subtitle');
  const youBlocked = isBlocked(conv);
  sub.textContent =
    typing ||
    (conv.to.group
      ? groupSubtitle(conv)
      : youBlocked
        ? 'blocked'
        : online === null
          ? ''
          : online
            ? 'online'
            : 'offline');
  sub.classList.toggle('typing', Boolean(typing));

  const blockButton = $('block-toggle');
  blockButton.hidden = !conv.to.user;
  blockButton.textContent = youBlocked ? 'Unblock' : 'Block';
  blockButton.setAttribute('aria-pressed', String(youBlocked));
  blockButton.title = youBlocked ? `Unblock ${conv.to.user}` : `Block ${conv.to.user}: no direct messages, presence or typing either way`;

  const notice = $('chat-notice');
  notice.textContent = youBlocked
    ? `You blocked ${conv.to.user}. Neither of you can send the other direct messages; unblock to talk again.`
    : conv.left
      ? `${conv.left} You can no longer send or read new messages here.`
      : conv.refusal
        ? `Not sent: ${conv.refusal}`
        : '';
  notice.hidden = !notice.textContent;
  $('composer-input').disabled = youBlocked || Boolean(conv.left);
  $('send-button').disabled = youBlocked || Boolean(conv.left);
  renderGroupPanel(conv);

  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 48;

  const records = [...conv.records.values()].sort((a, b) => {
    // Stored messages in conversation order, then pending ones as typed.
    if (a.seq && b.seq) return a.seq - b.seq;
    if (a.seq) return -1;
    if (b.seq) return 1;
    return a.createdAt - b.createdAt;
  });
  const list = $('message-list');
  const existing = new Map([...list.children].map((li) => [li.dataset.key, li]));
  const items = [];
  let day = null;
  for (const rec of records) {
    const d = dayOf(rec);
    if (d !== day) {
      day = d;
      const key = `day:${d}`;
      const sep = existing.get(key) || document.createElement('li');
      sep.dataset.key = key;
      sep.className = 'day';
      sep.setAttribute('role', 'separator');
      sep.textContent = dayLabel(rec);
      items.push(sep);
    }
    if (rec.kind === 'event') {
      const li = existing.get(rec.key) || document.createElement('li');
      li.dataset.key = rec.key;
      li.dataset.seq = String(rec.seq);
      li.className = 'event';
      li.dataset.testid = 'group-event';
      li.textContent = rec.text;
      items.push(li);
      continue;
    }
    const li = existing.get(rec.key) || createMessageItem(rec);
    updateMessageItem(li, conv, rec);
    items.push(li);
  }
  list.replaceChildren(...items);

  const done = conv.historyLoaded && !conv.historyMore;
  $('load-older').hidden = done;
  $('load-older').disabled = conv.historyLoading;
  $('load-older').textContent = conv.historyLoading ? 'Loading…' : 'Load older messages';
  $('history-end').hidden = !done;

  const editBar = $('editing');
  editBar.hidden = !(editing && editing.conversation === conv.id);

  if (scrollIntent === 'keep') box.scrollTop = box.scrollHeight - fromBottom;
  else if (scrollIntent === 'bottom' || atBottom) box.scrollTop = box.scrollHeight;
  scrollIntent = 'auto';
}

function createMessageItem(rec) {
  const li = document.createElement('li');
  li.dataset.key = rec.key;
  li.className = `message ${rec.from === me ? 'mine' : 'theirs'}`;
  const from = document.createElement('span');
  from.className = 'from';
  const text = document.createElement('p');
  text.className = 'text';
  const meta = document.createElement('span');
  meta.className = 'meta';
  const actions = document.createElement('span');
  actions.className = 'actions';
  if (rec.from === me) {
    const edit = document.createElement('button');
    edit.type = 'button';
    edit.className = 'link';
    edit.dataset.action = 'edit';
    edit.textContent = 'Edit';
    edit.addEventListener('click', () => startEditing(rec.key));
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'link';
    del.dataset.action = 'delete';
    del.textContent = 'Delete';
    del.addEventListener('click', () => deleteOwn(rec.key));
    actions.append(edit, del);
  }
  li.append(from, text, meta, actions);
  return li;
}

const STATE_LABEL = {
  pending: '◷ Sending…',
  sent: '✓ Sent',
  delivered: '✓✓ Delivered',
  read: '✓✓ Read',
  failed: '⚠ Not sent',
  received: '',
};

function updateMessageItem(li, conv, rec) {
  const state = displayState(conv, rec);
  li.dataset.state = state;
  li.dataset.seq = String(rec.seq);
  li.dataset.deleted = String(Boolean(rec.deleted));
  li.dataset.edited = String(Boolean(rec.editedAt) && !rec.deleted);
  const [from, text, meta, actions] = li.children;
  from.textContent = conv.to.group && rec.from !== me ? rec.from : '';
  from.hidden = !from.textContent;
  const shownText = rec.deleted ? 'Message deleted' : rec.text;
  if (text.textContent !== shownText) text.textContent = shownText;
  text.classList.toggle('tombstone', Boolean(rec.deleted));
  let label = STATE_LABEL[state];
  if (state === 'read' && conv.to.group) label = `✓✓ Read by ${readersOf(conv, rec).join(', ')}`;
  if (state === 'failed' && rec.error) label += ` (${rec.error})`;
  const edited = rec.editedAt && !rec.deleted ? 'edited' : '';
  meta.textContent = [formatTime(rec.sentAt), edited, label].filter(Boolean).join(' · ');
  if (edited) meta.title = `Edited ${new Date(rec.editedAt).toLocaleString()}`;
  actions.hidden = !(rec.from === me && rec.status === 'stored' && rec.seq > 0 && !rec.deleted);
  for (const b of actions.children) b.setAttribute('aria-label', `${b.textContent} message: ${rec.text.slice(0, 40)}`);
}

// ------------------------------------------------------------- editing

function recordByKey(convId, key) {
  const conv = conversations.get(convId);
  return conv ? conv.records.get(key) : null;
}

function startEditing(key) {
  const rec = recordByKey(activeId, key);
  if (!rec || rec.deleted) return;
  editing = { conversation: activeId, key };
  const input = $('composer-input');
  input.value = rec.text;
  autosize(input);
  input.focus();
  scheduleRender();
}

function stopEditing() {
  editing = null;
  const input = $('composer-input');
  input.value = '';
  autosize(input);
  scheduleRender();
}

async function saveEdit(text) {
  const { conversation, key } = editing;
  const rec = recordByKey(conversation, key);
  stopEditing();
  if (!rec || !client || text === rec.text) return;
  try {
    // The "edit" event that follows the ack changes what is shown.
    await client.edit(conversation, rec.seq, text);
  } catch (e) {
    flash(`Could not edit the message: ${reasonOf(e)}`);
  }
}

async function deleteOwn(key) {
  const convId = activeId;
  const rec = recordByKey(convId, key);
  if (!rec || !client) return;
  if (!window.confirm('Delete this message for everyone?')) return;
  try {
    await client.deleteMessage(convId, rec.seq);
  } catch (e) {
    flash(`Could not delete the message: ${reasonOf(e)}`);
  }
}

async function toggleBlock() {
  const conv = activeId && conversations.get(activeId);
  if (!conv || !conv.to.user || !client) return;
  const block = !isBlocked(conv);
  try {
    blocked = new Set(await client.block(conv.to.user, block));
    conv.refusal = '';
    scheduleRender();
  } catch (e) {
    flash(`Could not ${block ? 'block' : 'unblock'} ${conv.to.user}: ${reasonOf(e)}`);
  }
}

// ------------------------------------------------------------- groups

const ROLE_ORDER = { owner: 0, admin: 1, member: 2 };

/** The group's members, the owner first, then admins, then by id. */
function sortedMembers(conv) {
  return [...conv.group.members].sort(([a, ra], [b, rb]) => (ROLE_ORDER[ra] ?? 3) - (ROLE_ORDER[rb] ?? 3) || a.localeCompare(b));
}

function groupSubtitle(conv) {
  if (conv.left) return 'left';
  if (!conv.group) return 'group';
  const members = sortedMembers(conv).map(([u, role]) => (role === 'member' ? u : `${u} (${role})`));
  return `${members.length} member${members.length === 1 ? '' : 's'}: ${members.join(', ')}`;
}

/** The member panel of the open group: members with roles and what this user may do. */
function renderGroupPanel(conv) {
  const toggle = $('group-toggle');
  const panel = $('group-panel');
  const usable = Boolean(conv.to.group && !conv.left);
  toggle.hidden = !usable;
  toggle.setAttribute('aria-expanded', String(usable && groupPanelOpen));
  panel.hidden = !(usable && groupPanelOpen);
  if (panel.hidden) return;
  const role = myRole(conv);
  const error = $('group-error');
  error.textContent = conv.groupError;
  error.hidden = !conv.groupError;
  // Adding is offered to every member: the server decides (and says why not).
  $('group-rename-form').hidden = !(role === 'owner' || role === 'admin');
  const members = conv.group ? sortedMembers(conv) : [];
  const sig = JSON.stringify([conv.id, me, members]);
  if (sig === groupPanelSig) return;
  groupPanelSig = sig;
  const ul = $('group-members');
  if (!conv.group) {
    const li = document.createElement('li');
    li.className = 'muted';
    li.textContent = 'Loading members…';
    ul.replaceChildren(li);
    return;
  }
  ul.replaceChildren(
    ...members.map(([user, memberRole]) => {
      const li = document.createElement('li');
      li.dataset.user = user;
      li.dataset.role = memberRole;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = user === me ? `${user} (you)` : user;
      li.append(name);
      if (memberRole !== 'member') {
        const badge = document.createElement('span');
        badge.className = 'role';
        badge.textContent = memberRole;
        li.append(badge);
      }
      const action = (label, testid, fn) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'link';
        b.dataset.action = testid;
        b.textContent = label;
        b.setAttribute('aria-label', `${label}: ${user}`);
        b.addEventListener('click', fn);
        li.append(b);
      };
      if (user !== me && role === 'owner') {
        if (memberRole === 'member') {
          action('Make admin', 'make-admin', () => groupChange({ setRole: { user, role: 'admin' } }, `make ${user} an admin`));
        } else if (memberRole === 'admin') {
          action('Remove admin', 'remove-admin', () => groupChange({ setRole: { user, role: 'member' } }, `remove ${user} as admin`));
        }
        action('Make owner', 'make-owner', () => {
          if (window.confirm(`Make ${user} the owner? You will be an admin.`)) {
            groupChange({ setRole: { user, role: 'owner' } }, `make ${user} the owner`);
          }
        });
      }
      if (user !== me && (role === 'owner' || (role === 'admin' && memberRole === 'member'))) {
        action('Remove', 'remove', () => {
          if (window.confirm(`Remove ${user} from the group?`)) groupChange({ removeMembers: [user] }, `remove ${user}`);
        });
      }
      return li;
    }),
  );
}

/** Sends a change of the open group; a refusal shows in its panel. */
async function groupChange(change, what) {
  const conv = activeId && conversations.get(activeId);
  if (!conv || !conv.to.group || !client) return false;
  conv.groupError = '';
  scheduleRender();
  try {
    // The event that follows the ack shows the change.
    await client.updateGroup(conv.to.group, change);
    return true;
  } catch (e) {
    conv.groupError = `Could not ${what}: ${reasonOf(e)}`;
    groupPanelOpen = true;
    scheduleRender();
    return false;
  }
}

/** User ids typed as "bob, carol" (or with spaces, or @bob). */
function parseUsers(text) {
  return [...new Set(text.split(/[\s,]+/).map((u) => u.replace(/^@/, '')).filter(Boolean))];
}

async function createGroup() {
  const title = $('newgroup-title').value.trim();
  // The creator is always a member.
  const members = parseUsers($('newgroup-members').value).filter((u) => u !== me);
  const error = $('newgroup-error');
  if (!title || !client) return;
  const button = $('newgroup-create');
  button.disabled = true;
  button.textContent = 'Creating…';
  error.hidden = true;
  try {
    const ack = await client.createGroup(title, members);
    const conv = conversationFor(ack.conversation, { group: ack.group });
    conv.title = title;
    conv.lastAt = Math.max(conv.lastAt, Date.parse(ack.sentAt) || Date.now());
    $('newgroup-title').value = '';
    $('newgroup-members').value = '';
    showNewGroup(false);
    setActive(conv.id);
  } catch (e) {
    error.textContent = `Could not create the group: ${reasonOf(e)}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = 'Create group';
  }
}

function showNewGroup(show) {
  $('newgroup-form').hidden = !show;
  $('newgroup-toggle').setAttribute('aria-expanded', String(show));
  if (show) $('newgroup-title').focus();
  else $('newgroup-error').hidden = true;
}

// ------------------------------------------------------------- input

function parseRecipient(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.startsWith('#')) return t.length > 1 ? { group: t.slice(1) } : null;
  return { user: t.replace(/^@/, '') };
}

function sendComposer() {
  const conv = activeId && conversations.get(activeId);
  const input = $('composer-input');
  const text = input.value;
  if (!conv || !client || text.trim() === '') return;
  if (editing && editing.conversation === conv.id) {
    saveEdit(text);
    return;
  }
  if (isBlocked(conv)) return;
  const p = client.send(conv.to, text);
  addPending(p.clientMsgId, conv.to, text, Date.now());
  input.value = '';
  lastTypingSent = 0; // the next keystroke is news again
  autosize(input);
  scrollIntent = 'bottom';
  scheduleRender();
}

function autosize(el) {
  el.style.height = 'auto';
  el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
}

function wire() {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    const device = $('device-input').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(DEVICE_KEY, device);
    $('token-input').value = '';
    start(token, device);
  });
  $('signout').addEventListener('click', () => signOut());
  $('announcement-close').addEventListener('click', () => {
    $('announcement').hidden = true;
  });
  $('newchat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const to = parseRecipient($('newchat-input').value);
    if (!to || !me) return;
    const conv = conversationFor(conversationOf(me, to), to);
    $('newchat-input').value = '';
    setActive(conv.id);
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    sendComposer();
  });
  const input = $('composer-input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendComposer();
    }
  });
  input.addEventListener('input', () => {
    autosize(input);
    const conv = activeId && conversations.get(activeId);
    if (conv && client && !editing && input.value && Date.now() - lastTypingSent > TYPING_SEND_EVERY_MS) {
      lastTypingSent = Date.now();
      client.typing(conv.to);
    }
  });
  $('edit-cancel').addEventListener('click', () => {
    stopEditing();
    input.focus();
  });
  $('block-toggle').addEventListener('click', toggleBlock);
  $('newgroup-toggle').addEventListener('click', () => showNewGroup($('newgroup-form').hidden));
  $('newgroup-cancel').addEventListener('click', () => showNewGroup(false));
  $('newgroup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createGroup();
  });
  $('group-toggle').addEventListener('click', () => {
    groupPanelOpen = !groupPanelOpen;
    const conv = activeId && conversations.get(activeId);
    if (groupPanelOpen && conv) {
      conv.groupError = '';
      $('group-rename-input').value = conv.title;
      loadGroup(conv);
    }
    scheduleRender();
  });
  $('group-add-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const users = parseUsers($('group-add-input').value);
    if (users.length === 0) return;
    if (await groupChange({ addMembers: users }, `add ${users.join(', ')}`)) $('group-add-input').value = '';
  });
  $('group-rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const title = $('group-rename-input').value.trim();
    if (title) groupChange({ rename: title }, 'rename the group');
  });
  $('group-leave').addEventListener('click', async () => {
    const conv = activeId && conversations.get(activeId);
    if (!conv || !window.confirm(`Leave “${conv.title}”? You will no longer get its messages.`)) return;
    if (await groupChange({ leave: true }, 'leave the group')) {
      conv.left = conv.left || 'You left this group.';
      groupPanelOpen = false;
      scheduleRender();
    }
  });
  $('back').addEventListener('click', () => setActive(null));
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (editing) {
      stopEditing();
      return;
    }
    if (groupPanelOpen && activeId) {
      groupPanelOpen = false;
      scheduleRender();
      $('group-toggle').focus();
      return;
    }
    if (activeId && document.body.classList.contains('chat-open')) {
      const id = activeId;
      setActive(null);
      document.querySelector(`[data-conversation="${CSS.escape(id)}"]`)?.focus();
    }
  });
  const olderOfActive = () => {
    const conv = activeId && conversations.get(activeId);
    if (conv && conv.historyLoaded) loadHistory(conv);
  };
  $('load-older').addEventListener('click', olderOfActive);
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 40) olderOfActive();
  });
  $('more-conversations').addEventListener('click', () => loadConversations());
  $('conversations').addEventListener('scroll', () => {
    const ul = $('conversations');
    if (ul.scrollHeight - ul.scrollTop - ul.clientHeight < 40) loadConversations();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible' || !client) return;
    markRead();
    client.retryNow();
    if (client.state === 'open') client.ping();
  });
  window.addEventListener('online', () => client && client.retryNow());
}

function boot() {
  wire();
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    if (params.get('device')) sessionStorage.setItem(DEVICE_KEY, params.get('device'));
    // Keep the token out of the address bar, history and screenshots.
    params.delete('token');
    params.delete('device');
    const rest = params.toString();
    history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) start(token, sessionStorage.getItem(DEVICE_KEY) || '');
  else showSignIn();
}

boot();
