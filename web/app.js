// app.js: Parley's browser chat page (web/index.html), on top of parley.js.
//
// What the page keeps, and where it comes from:
//   * messages: applied live by parley.js's inbox rule ("message" events),
//     plus history, which is the user's own inbox paged backwards with sync
//     (the protocol has no other history call, so history holds what reached
//     this user, across all conversations, and older conversations appear as
//     their pages are loaded);
//   * own sends: shown at once as "pending" (parley.js keeps them in its
//     outbox across reconnects and reloads), "sent" on ack (stored),
//     "delivered" once the recipient has had a live session since (presence:
//     the service pushes every stored message to every live session), "read"
//     on a receipt;
//   * read positions (own and others'), per conversation, kept in
//     localStorage so unread counts and read marks survive a reload.
// Messages are keyed by (sender's clientMsgId) for own sends and by
// messageId otherwise, so a message that arrives live, in a sync, in history
// and as an ack is one message on screen, ordered by its conversation seq.

import { connect, conversationOf, recipientOf, tokenDevice, tokenSubject } from './parley.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'parley.app:token';
const DEVICE_KEY = 'parley.app:device';
const TYPING_SHOWN_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;
const HISTORY_PAGE = 100;
// One "load older" gathers this many messages of the open conversation, or
// reads this many inbox pages, whichever comes first.
const OLDER_WANTED = 20;
const OLDER_MAX_PAGES = 5;

/** @type {import('./parley.js').ParleyClient|null} */
let client = null;
let me = '';
/** @type {Map<string, Conversation>} */
const conversations = new Map();
/** clientMsgId -> conversation id of an own send. */
const ownSends = new Map();
/** user -> online */
const presence = new Map();
let activeId = null;
let historyDone = false;
let loadingOlder = false;
let lastTypingSent = 0;
let renderQueued = false;
let saveQueued = false;
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
 * @property {number} createdAt
 * @property {'pending'|'stored'|'failed'} status
 * @property {string} [error]
 * @property {boolean} history Loaded as history (older than this page's
 *     start), not applied live.
 */

/**
 * @typedef {object} Conversation
 * @property {string} id
 * @property {import('./parley.js').Recipient} to
 * @property {string} title
 * @property {Map<string, Record>} records
 * @property {number} readSeq Up to where this user has read.
 * @property {boolean} readKnown Whether readSeq is this device's knowledge
 *     (saved, or read here). The protocol cannot tell a new device what was
 *     read elsewhere, so there history counts as read, not as unread.
 * @property {Map<string, number>} peerReads Up to where others have read.
 * @property {number} deliveredSeq Own messages up to here were delivered.
 * @property {Map<string, number>} typing user -> until when (ms).
 * @property {number} lastAt Last activity, for ordering the list.
 * @property {string} preview
 */

// ------------------------------------------------------------- state

function storageKey() {
  return `parley.app:${me}:state`;
}

function loadSaved() {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey()) || '{}');
    for (const c of saved.conversations || []) {
      const conv = conversationFor(c.id);
      if (!conv) continue;
      conv.readSeq = Math.max(conv.readSeq, Number(c.readSeq) || 0);
      conv.readKnown = c.readKnown !== false;
      conv.deliveredSeq = Math.max(conv.deliveredSeq, Number(c.deliveredSeq) || 0);
      for (const [u, s] of Object.entries(c.peerReads || {})) conv.peerReads.set(u, Number(s) || 0);
      conv.lastAt = Math.max(conv.lastAt, Number(c.lastAt) || 0);
      conv.preview = conv.preview || String(c.preview || '');
    }
  } catch {
    // Nothing usable saved.
  }
}

function save() {
  if (saveQueued || !me) return;
  saveQueued = true;
  setTimeout(() => {
    saveQueued = false;
    const list = [...conversations.values()].map((c) => ({
      id: c.id,
      readSeq: c.readSeq,
      readKnown: c.readKnown,
      deliveredSeq: c.deliveredSeq,
      peerReads: Object.fromEntries(c.peerReads),
      lastAt: c.lastAt,
      preview: c.preview,
    }));
    try {
      localStorage.setItem(storageKey(), JSON.stringify({ conversations: list }));
    } catch {
      // Storage full or disabled: the page still works, unsaved.
    }
  }, 0);
}

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
    readSeq: 0,
    readKnown: false,
    peerReads: new Map(),
    deliveredSeq: 0,
    typing: new Map(),
    lastAt: 0,
    preview: '',
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

function touch(conv, rec) {
  const at = Date.parse(rec.sentAt) || rec.createdAt || 0;
  if (at >= conv.lastAt) {
    conv.lastAt = at;
    conv.preview = `${rec.from === me ? 'You: ' : conv.to.group ? `${rec.from}: ` : ''}${rec.text}`;
  }
}

/** Adds a stored message (live, synced or from history); idempotent. */
function addMessage(m, { history = false } = {}) {
  const conv = conversationFor(m.conversation, recipientOfMessage(m));
  if (!conv) return;
  const key = keyOf(m);
  const rec = conv.records.get(key) || { key, createdAt: Date.now(), history };
  Object.assign(rec, {
    clientMsgId: m.clientMsgId,
    messageId: m.messageId,
    seq: m.seq,
    from: m.from,
    text: m.text,
    sentAt: m.sentAt,
    status: 'stored',
  });
  conv.records.set(key, rec);
  if (m.from !== me) conv.typing.delete(m.from);
  touch(conv, rec);
  if (m.from === me && conv.to.user && presence.get(conv.to.user)) {
    conv.deliveredSeq = Math.max(conv.deliveredSeq, m.seq);
  }
  scheduleRender();
  save();
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

function unreadCount(conv) {
  let n = 0;
  for (const r of conv.records.values()) {
    if (r.from !== me && r.seq > conv.readSeq && (conv.readKnown || !r.history)) n += 1;
  }
  return n;
}

function maxSeq(conv) {
  let s = 0;
  for (const r of conv.records.values()) s = Math.max(s, r.seq);
  return s;
}

/** Marks the open conversation read when the person can see it. */
function markRead() {
  const conv = activeId && conversations.get(activeId);
  if (!conv || document.visibilityState !== 'visible' || !client) return;
  if (unreadCount(conv) === 0) return;
  const seq = maxSeq(conv);
  conv.readSeq = seq;
  conv.readKnown = true;
  client.read(conv.id, seq);
  save();
  scheduleRender();
}

// ------------------------------------------------------------- client

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

function start(token, device) {
  me = tokenSubject(token) || '';
  if (me) loadSaved();
  client = connect(wsUrl(), { token, device: device || tokenDevice(token) || 'browser' });
  showApp();

  // Sends still pending from before a reload of this tab.
  for (const e of client.pending()) addPending(e.clientMsgId, e.to, e.text, e.createdAt);

  client.on('state', onState);
  client.on('welcome', onWelcome);
  client.on('message', (m) => {
    addMessage(m);
    if (m.conversation === activeId && m.from !== me) markRead();
  });
  client.on('ack', (a) => {
    const convId = ownSends.get(a.clientMsgId);
    let conv = convId && conversations.get(convId);
    let rec = conv && conv.records.get(`c:${a.clientMsgId}`);
    if (!rec) return;
    if (a.conversation && a.conversation !== conv.id) {
      // The service names the conversation; follow it.
      conv.records.delete(rec.key);
      conv = conversationFor(a.conversation, conv.to);
      conv.records.set(rec.key, rec);
      ownSends.set(a.clientMsgId, conv.id);
    }
    Object.assign(rec, { messageId: a.messageId, seq: a.seq, sentAt: a.sentAt, status: 'stored' });
    if (conv.to.user && presence.get(conv.to.user)) conv.deliveredSeq = Math.max(conv.deliveredSeq, a.seq);
    touch(conv, rec);
    scheduleRender();
    save();
  });
  client.on('sendFailed', (f) => {
    const conv = conversations.get(ownSends.get(f.clientMsgId));
    const rec = conv && conv.records.get(`c:${f.clientMsgId}`);
    if (rec) Object.assign(rec, { status: 'failed', error: humanError(f.code, f.message) });
    scheduleRender();
  });
  client.on('receipt', (r) => {
    const conv = conversationFor(r.conversation);
    if (!conv) return;
    if (r.user === me) {
      conv.readSeq = Math.max(conv.readSeq, r.seq); // read on another device
      conv.readKnown = true;
    } else {
      conv.peerReads.set(r.user, Math.max(conv.peerReads.get(r.user) || 0, r.seq));
      conv.deliveredSeq = Math.max(conv.deliveredSeq, r.seq);
    }
    scheduleRender();
    save();
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
      save();
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
    // server's replay.
    conversations.clear();
    try {
      localStorage.removeItem(storageKey());
    } catch {
      // Nothing saved.
    }
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
    conv.records.set(key, { key, clientMsgId, messageId: '', seq: 0, from: me, text, sentAt: '', createdAt, status: 'pending' });
  }
  ownSends.set(clientMsgId, conv.id);
  touch(conv, conv.records.get(key));
  scheduleRender();
}

let firstWelcome = true;
function onWelcome(w) {
  if (w.userId && w.userId !== me) {
    me = w.userId;
    loadSaved();
  }
  $('me').textContent = me;
  if (firstWelcome) {
    firstWelcome = false;
    // The most recent page of the inbox fills the conversation list.
    loadOlder(HISTORY_PAGE, 1);
  }
  markRead();
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
    ERROR_CODE_INVALID_ARGUMENT: 'Invalid message',
    ERROR_CODE_TOO_LARGE: 'Message too long',
  };
  const head = names[code] || code.replace(/^ERROR_CODE_/, '').toLowerCase().replace(/_/g, ' ');
  return message ? `${head}: ${message}` : head;
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

/**
 * Loads older inbox pages: until the open conversation gained `wanted`
 * messages, `maxPages` pages were read, or the inbox start is reached.
 */
async function loadOlder(wanted = OLDER_WANTED, maxPages = OLDER_MAX_PAGES) {
  if (loadingOlder || historyDone || !client) return;
  loadingOlder = true;
  scheduleRender();
  const target = activeId;
  const c = client;
  try {
    let gained = 0;
    for (let page = 0; page < maxPages && gained < wanted; page++) {
      const { messages, done } = await c.loadOlder(HISTORY_PAGE);
      if (c !== client) return; // signed out meanwhile
      for (const m of messages) {
        addMessage(m, { history: true });
        if (m.conversation === target) gained += 1;
      }
      if (done) {
        historyDone = true;
        break;
      }
    }
  } catch (e) {
    if (c === client) flash(`Could not load older messages: ${e.message}`);
  } finally {
    if (c === client) {
      loadingOlder = false;
      scrollIntent = 'keep';
      scheduleRender();
    }
  }
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
  activeId = null;
  historyDone = false;
  loadingOlder = false;
  firstWelcome = true;
  me = '';
  document.body.classList.remove('chat-open');
  showSignIn(error);
}

function setActive(id) {
  activeId = id;
  document.body.classList.toggle('chat-open', Boolean(id));
  scrollIntent = 'bottom';
  scheduleRender();
  if (!id) return;
  markRead();
  const conv = conversations.get(id);
  if (conv && conv.records.size < OLDER_WANTED && !historyDone) loadOlder();
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
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

function render() {
  if ($('app').hidden) return;
  renderList();
  renderChat();
}

function renderList() {
  const ul = $('conversations');
  let total = 0;
  for (const conv of conversations.values()) total += unreadCount(conv);
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
      const unread = unreadCount(conv);
      b.dataset.unread = String(unread);
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
      preview.textContent = typing || conv.preview;
      preview.classList.toggle('typing', Boolean(typing));
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.testid = 'unread';
      badge.textContent = unread > 99 ? '99+' : String(unread);
      badge.hidden = unread === 0;
      b.setAttribute('aria-label', `${conv.title}${unread ? `, ${unread} unread` : ''}`);
      b.append(dot, title, badge, preview);
      b.addEventListener('click', () => setActive(conv.id));
      li.append(b);
      return li;
    }),
  );
  $('no-conversations').hidden = conversations.size > 0;
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
  sub.textContent = typing || (online === null ? (conv.to.group ? 'group' : '') : online ? 'online' : 'offline');
  sub.classList.toggle('typing', Boolean(typing));

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
  const items = records.map((rec) => {
    const li = existing.get(rec.key) || createMessageItem(rec);
    updateMessageItem(li, conv, rec);
    return li;
  });
  list.replaceChildren(...items);

  $('load-older').hidden = historyDone;
  $('load-older').disabled = loadingOlder;
  $('load-older').textContent = loadingOlder ? 'Loading…' : 'Load older messages';
  $('history-end').hidden = !historyDone;

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
  li.append(from, text, meta);
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
  const [from, text, meta] = li.children;
  from.textContent = conv.to.group && rec.from !== me ? rec.from : '';
  from.hidden = !from.textContent;
  if (text.textContent !== rec.text) text.textContent = rec.text;
  let label = STATE_LABEL[state];
  if (state === 'read' && conv.to.group) label = `✓✓ Read by ${readersOf(conv, rec).join(', ')}`;
  if (state === 'failed' && rec.error) label += ` (${rec.error})`;
  const time = formatTime(rec.sentAt);
  meta.textContent = [time, label].filter(Boolean).join(' · ');
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
    if (conv && client && input.value && Date.now() - lastTypingSent > TYPING_SEND_EVERY_MS) {
      lastTypingSent = Date.now();
      client.typing(conv.to);
    }
  });
  $('back').addEventListener('click', () => setActive(null));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && activeId && document.body.classList.contains('chat-open')) {
      const id = activeId;
      setActive(null);
      document.querySelector(`[data-conversation="${CSS.escape(id)}"]`)?.focus();
    }
  });
  $('load-older').addEventListener('click', () => loadOlder());
  $('messages').addEventListener('scroll', () => {
    if ($('messages').scrollTop < 40 && !loadingOlder && !historyDone) loadOlder();
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
