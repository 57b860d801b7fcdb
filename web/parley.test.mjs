// Unit tests of parley.js: the inbox rule, deduplication, the outbox, the
// backoff and the close-code policy, with a scripted WebSocket and a manual
// clock (no network, no real timers).
//
//   node --test web/

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  Inbox,
  Outbox,
  ParleyError,
  backoffDelay,
  closePolicy,
  conversationOf,
  directConversation,
  groupRole,
  messageKind,
  normalizeGroup,
  normalizeMessage,
  normalizeSummary,
  recipientOf,
  toSeq,
  tokenDevice,
  tokenSubject,
  connect,
} from './parley.js';

// ------------------------------------------------------------------ fakes

/** Timers driven by hand: advance(ms) runs what falls due, in order. */
class ManualClock {
  constructor() {
    this.t = 1_000_000;
    this.nextId = 1;
    this.pending = new Map();
  }
  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.pending.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this.pending.delete(id);
  };
  now = () => this.t;
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let best = null;
      for (const [id, p] of this.pending) if (p.at <= end && (!best || p.at < best[1].at)) best = [id, p];
      if (!best) break;
      this.pending.delete(best[0]);
      this.t = best[1].at;
      best[1].fn();
    }
    this.t = end;
  }
}

/** A WebSocket whose server side the test plays. */
class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.closedByClient = null;
    FakeSocket.all.push(this);
  }
  static last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.closedByClient = { code, reason };
  }
  // --- server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  frames(kind) {
    return this.sent.filter((f) => kind in f).map((f) => f[kind]);
  }
  takeSent() {
    const s = this.sent;
    this.sent = [];
    return s;
  }
}

function memory() {
  const m = new Map();
  return {
    map: m,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

/** An unsigned JWT with this subject (the client only reads "sub"). */
function token(sub, extra = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: 9999999999, ...extra })}.sig`;
}

function msg(inboxSeq, extra = {}) {
  return {
    inboxSeq: String(inboxSeq),
    messageId: `m${inboxSeq}`,
    conversation: 'd:alice:bob',
    seq: String(inboxSeq),
    from: 'bob',
    to: { user: 'alice' },
    text: `hello ${inboxSeq}`,
    sentAt: '2026-11-24T10:00:00Z',
    ...extra,
  };
}

/** A client for alice with fakes, plus what it emitted. */
function setup({ storage = memory(), outboxStorage = memory(), user = 'alice', random = () => 0.5 } = {}) {
  FakeSocket.all = [];
  const clock = new ManualClock();
  const client = connect('ws://gw/', {
    token: token(user),
    device: 'test',
    WebSocket: FakeSocket,
    storage,
    outboxStorage,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random,
  });
  const seen = {
    message: [], ack: [], state: [], stopped: [], sendFailed: [], error: [], receipt: [], reset: [],
    edit: [], delete: [], blocked: [], groupEvent: [],
  };
  for (const k of Object.keys(seen)) client.on(k, (p) => seen[k].push(p));
  return { client, clock, seen, storage, outboxStorage };
}

/** Lets promise callbacks and queued microtasks run. */
const settle = () => new Promise((r) => setImmediate(r));

function welcome(ws, inboxSeq, userId = 'alice') {
  ws.open();
  ws.deliver({ welcome: { sessionId: 's1', userId, inboxSeq: String(inboxSeq), heartbeatMs: 25000 } });
}

// ------------------------------------------------------------------ tests

describe('toSeq and the JSON mapping', () => {
  it('reads strings, numbers and omitted fields', () => {
    assert.equal(toSeq('42'), 42);
    assert.equal(toSeq(42), 42);
    assert.equal(toSeq(undefined), 0);
    assert.equal(toSeq(''), 0);
    assert.throws(() => toSeq('-1'), RangeError);
    assert.throws(() => toSeq('1.5'), RangeError);
    assert.throws(() => toSeq('99999999999999999999'), RangeError);
  });

  it('normalizes a message whose default fields were omitted', () => {
    const m = normalizeMessage({ inboxSeq: '3', messageId: 'x', conversation: 'g:team', from: 'bob', to: { group: 'team' }, text: 't' });
    assert.deepEqual(m, {
      inboxSeq: 3,
      messageId: 'x',
      conversation: 'g:team',
      seq: 0,
      from: 'bob',
      to: { group: 'team' },
      text: 't',
      sentAt: '',
      clientMsgId: '',
      kind: 'text',
      targetSeq: 0,
      editedAt: '',
      deleted: false,
      groupEvent: null,
    });
  });

  it('normalizes message kinds, edits, tombstones and conversation summaries', () => {
    assert.equal(messageKind(undefined), 'text');
    assert.equal(messageKind('MESSAGE_KIND_EDIT'), 'edit');
    assert.equal(messageKind(2), 'delete');
    assert.equal(messageKind('MESSAGE_KIND_MEMBER_ADDED'), 'MESSAGE_KIND_MEMBER_ADDED');
    const edit = normalizeMessage(msg(4, { kind: 'MESSAGE_KIND_EDIT', targetSeq: '2', text: 'fixed' }));
    assert.deepEqual([edit.kind, edit.targetSeq, edit.text], ['edit', 2, 'fixed']);
    const tomb = normalizeMessage(msg(2, { text: undefined, deleted: true, editedAt: '2026-12-05T10:00:00Z' }));
    assert.deepEqual([tomb.kind, tomb.deleted, tomb.text, tomb.editedAt], ['text', true, '', '2026-12-05T10:00:00Z']);
    assert.deepEqual(
      normalizeSummary({ id: 'd:alice:bob', title: 'bob', peer: 'bob', headSeq: '9', readSeq: '7', unread: '2', peerReadSeq: '9', lastActivity: 't', lastMessage: msg(9) }),
      {
        id: 'd:alice:bob',
        kind: 'direct',
        title: 'bob',
        peer: 'bob',
        headSeq: 9,
        lastActivity: 't',
        lastMessage: normalizeMessage(msg(9)),
        readSeq: 7,
        unread: 2,
        peerReadSeq: 9,
      },
    );
    const group = normalizeSummary({ id: 'g:team', title: 'team' });
    assert.deepEqual([group.kind, group.unread, group.lastMessage], ['group', 0, null]);
  });

  it('names conversations like the service does', () => {
    assert.equal(directConversation('bob', 'alice'), 'd:alice:bob');
    assert.equal(conversationOf('bob', { user: 'alice' }), 'd:alice:bob');
    assert.equal(conversationOf('bob', { group: 'team' }), 'g:team');
    assert.deepEqual(recipientOf('alice', 'd:alice:bob'), { user: 'bob' });
    assert.deepEqual(recipientOf('bob', 'd:alice:bob'), { user: 'alice' });
    assert.deepEqual(recipientOf('bob', 'g:team'), { group: 'team' });
    assert.equal(recipientOf('carol', 'd:alice:bob'), null);
  });

  it('reads the subject of a token without verifying it', () => {
    assert.equal(tokenSubject(token('alice')), 'alice');
    assert.equal(tokenSubject(token('zoë')), 'zoë');
    assert.equal(tokenSubject('garbage'), null);
  });

  it('reads the device a token was issued for, so the page does not override it', () => {
    assert.equal(tokenDevice(token('alice', { dev: 'laptop' })), 'laptop');
    assert.equal(tokenDevice(token('alice')), null);
    assert.equal(tokenDevice('garbage'), null);
  });
});

describe('Inbox (the inbox rule)', () => {
  const m = (s) => normalizeMessage(msg(s));

  it('applies last + 1 and ignores duplicates', () => {
    const inbox = new Inbox(0);
    assert.deepEqual(inbox.offer(m(1)).map((x) => x.inboxSeq), [1]);
    assert.deepEqual(inbox.offer(m(1)), []);
    assert.deepEqual(inbox.offer(m(2)).map((x) => x.inboxSeq), [2]);
    assert.equal(inbox.last, 2);
  });

  it('holds messages above a gap and applies them once it is filled', () => {
    const inbox = new Inbox(5);
    assert.deepEqual(inbox.offer(m(8)), []);
    assert.deepEqual(inbox.offer(m(7)), []);
    assert.ok(inbox.hasGap);
    assert.deepEqual(inbox.offer(m(6)).map((x) => x.inboxSeq), [6, 7, 8]);
    assert.ok(!inbox.hasGap);
    assert.equal(inbox.last, 8);
    assert.deepEqual(inbox.offer(m(7)), []);
  });

  it('holds one copy of a message delivered twice above a gap', () => {
    const inbox = new Inbox(0);
    inbox.offer(m(3));
    inbox.offer(m(3));
    inbox.offer(m(2));
    assert.deepEqual(inbox.offer(m(1)).map((x) => x.inboxSeq), [1, 2, 3]);
  });
});

describe('Outbox', () => {
  it('keeps sends in order, once per clientMsgId, and survives serialization', () => {
    const o = new Outbox();
    assert.ok(o.add({ clientMsgId: 'a', to: { user: 'bob' }, text: '1', createdAt: 1 }));
    assert.ok(o.add({ clientMsgId: 'b', to: { group: 'team' }, text: '2', createdAt: 2 }));
    assert.ok(!o.add({ clientMsgId: 'a', to: { user: 'bob' }, text: 'again', createdAt: 3 }));
    const copy = new Outbox();
    copy.restore(o.serialize());
    assert.deepEqual(copy.list().map((e) => [e.clientMsgId, e.text]), [['a', '1'], ['b', '2']]);
    assert.deepEqual(copy.list()[1].to, { group: 'team' });
    copy.restore('{not json');
    copy.restore('[{"nope":1}]');
    assert.equal(copy.list().length, 2);
  });
});

describe('backoffDelay', () => {
  it('doubles from the base up to the cap', () => {
    const mid = () => 0.5; // jitter factor exactly 1
    assert.deepEqual([0, 1, 2, 3].map((a) => backoffDelay(a, { baseMs: 500, maxMs: 30000 }, mid)), [500, 1000, 2000, 4000]);
    assert.equal(backoffDelay(10, { baseMs: 500, maxMs: 30000 }, mid), 30000);
    assert.equal(backoffDelay(1000, { baseMs: 500, maxMs: 30000 }, mid), 30000);
  });

  it('spreads each delay by the jitter', () => {
    assert.equal(backoffDelay(2, { baseMs: 500, jitter: 0.5 }, () => 0), 1000);
    assert.equal(backoffDelay(2, { baseMs: 500, jitter: 0.5 }, () => 0.999999), 3000);
    const seen = new Set();
    for (let i = 0; i < 50; i++) seen.add(backoffDelay(3, { baseMs: 500 }));
    assert.ok(seen.size > 10, 'real randomness gives different delays');
    for (const d of seen) assert.ok(d >= 2000 && d <= 6000);
  });
});

describe('closePolicy', () => {
  it('does not retry 4001 and 4029, and says why', () => {
    for (const code of [4001, 4029]) {
      const p = closePolicy(code, 'x');
      assert.equal(p.retry, false, `code ${code}`);
      assert.match(p.message, /\(x\)/);
    }
    assert.match(closePolicy(4001).message, /token/);
  });

  it('follows the reason prefix of 4003', () => {
    assert.equal(closePolicy(4003, 'reconnect: maintenance').retry, true);
    assert.equal(closePolicy(4003, 'no-reconnect: banned').retry, false);
    assert.equal(closePolicy(4003, 'something else').retry, false);
  });

  it('retries drops, draining, try-again-later and auth timeouts', () => {
    for (const code of [1001, 1006, 1011, 1012, 1013, 4008]) assert.equal(closePolicy(code).retry, true, `code ${code}`);
    assert.ok(closePolicy(1008).minDelayMs >= 10000);
  });

  it('does not retry what only a client fix cures', () => {
    for (const code of [1000, 1007, 1009]) assert.equal(closePolicy(code).retry, false, `code ${code}`);
  });
});

describe('ParleyClient', () => {
  it('authenticates with hello and starts a new device at the inbox head', () => {
    const { client, storage } = setup();
    const ws = FakeSocket.last();
    ws.open();
    assert.deepEqual(ws.takeSent(), [{ hello: { token: client.opts.token, device: 'test' } }]);
    ws.deliver({ welcome: { sessionId: 's', userId: 'alice', inboxSeq: '40' } });
    assert.equal(client.state, 'open');
    assert.equal(client.lastInboxSeq, 40);
    assert.equal(storage.getItem('parley.v1:alice:inboxSeq'), '40');
    assert.deepEqual(ws.takeSent(), [], 'a new device does not download the whole inbox');
  });

  it('applies live messages once and in order, syncing across a gap', () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    ws.deliver({ message: msg(1) });
    ws.deliver({ message: msg(1) });
    ws.deliver({ message: msg(4) });
    assert.deepEqual(ws.takeSent(), [{ sync: { afterSeq: '1', limit: 200 } }]);
    ws.deliver({ message: msg(5) });
    assert.deepEqual(ws.takeSent(), [], 'one sync at a time');
    ws.deliver({ synced: { messages: [msg(2)], inboxSeq: '5', more: true } });
    assert.deepEqual(ws.takeSent(), [{ sync: { afterSeq: '2', limit: 200 } }]);
    ws.deliver({ synced: { messages: [msg(3), msg(4)], inboxSeq: '5' } });
    assert.deepEqual(seen.message.map((m) => m.inboxSeq), [1, 2, 3, 4, 5]);
    assert.equal(client.lastInboxSeq, 5);
  });

  it('resumes after a drop with hello{inboxSeq: last} and applies the replay exactly once', () => {
    const { client, clock, seen, storage } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 3);
    ws.deliver({ message: msg(4) });
    ws.serverClose(1006);
    assert.equal(client.state, 'reconnecting');
    clock.advance(10_000);
    ws = FakeSocket.last();
    assert.equal(FakeSocket.all.length, 2);
    ws.open();
    assert.equal(ws.takeSent()[0].hello.inboxSeq, '4');
    ws.deliver({ welcome: { userId: 'alice', inboxSeq: '6' } });
    ws.deliver({ message: msg(4) });
    ws.deliver({ message: msg(5) });
    ws.deliver({ message: msg(6) });
    clock.advance(60_000);
    assert.deepEqual(ws.frames('sync'), [], 'the replay arrived: no sync needed');
    assert.deepEqual(seen.message.map((m) => m.inboxSeq), [4, 5, 6]);
    assert.equal(storage.getItem('parley.v1:alice:inboxSeq'), '6');
    assert.equal(client.lastInboxSeq, 6);
  });

  it('resumes from 0 with hello{inboxSeq: "0"}, which is not a new device', () => {
    const { client, clock } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 0);
    ws.serverClose(1006);
    clock.advance(10_000);
    ws = FakeSocket.last();
    ws.open();
    assert.equal(ws.takeSent()[0].hello.inboxSeq, '0', 'a device with an empty inbox resumes from 0');
    ws.deliver({ welcome: { userId: 'alice', inboxSeq: '1' } });
    ws.deliver({ message: msg(1) });
    assert.equal(client.lastInboxSeq, 1);
  });

  it('syncs on its own when the replay after welcome does not come', () => {
    const { clock } = setup({ storage: (() => { const s = memory(); s.setItem('parley.v1:alice:inboxSeq', '2'); return s; })() });
    const ws = FakeSocket.last();
    welcome(ws, 5);
    assert.deepEqual(ws.sent[0].hello.inboxSeq, '2');
    ws.takeSent();
    clock.advance(1_999);
    assert.deepEqual(ws.frames('sync'), []);
    clock.advance(1);
    assert.deepEqual(ws.frames('sync'), [{ afterSeq: '2', limit: 200 }]);
  });

  it('a reload continues from the stored position', () => {
    const storage = memory();
    const first = setup({ storage });
    welcome(FakeSocket.last(), 0);
    FakeSocket.last().deliver({ message: msg(1) });
    FakeSocket.last().deliver({ message: msg(2) });
    first.client.close();
    const second = setup({ storage });
    const ws = FakeSocket.last();
    ws.open();
    assert.equal(ws.sent[0].hello.inboxSeq, '2');
    ws.deliver({ welcome: { userId: 'alice', inboxSeq: '3' } });
    ws.deliver({ message: msg(2) });
    ws.deliver({ message: msg(3) });
    assert.deepEqual(second.seen.message.map((m) => m.inboxSeq), [3]);
  });

  it('starts over from the replay when the server is behind the stored position', () => {
    const storage = memory();
    storage.setItem('parley.v1:alice:inboxSeq', '50');
    const { client, seen } = setup({ storage });
    welcome(FakeSocket.last(), 2);
    assert.equal(client.lastInboxSeq, 0);
    assert.deepEqual(seen.reset, [{ from: 50, to: 0 }]);
    // The service replays the restored inbox from its start, then live.
    for (const i of [1, 2, 3]) FakeSocket.last().deliver({ message: msg(i) });
    assert.deepEqual(seen.message.map((m) => m.inboxSeq), [1, 2, 3]);
    assert.equal(storage.getItem('parley.v1:alice:inboxSeq'), '3');
  });

  it('keeps the store generation with its position and starts over when it changes', () => {
    const storage = memory();
    const { client, clock, seen } = setup({ storage });
    let ws = FakeSocket.last();
    ws.open();
    ws.deliver({ welcome: { userId: 'alice', inboxSeq: '300', storeGeneration: 'g1' } });
    ws.deliver({ message: msg(301) });
    assert.equal(storage.getItem('parley.v1:alice:storeGeneration'), 'g1');
    ws.serverClose(1012, "the service's data was restored from a backup; reconnect");
    clock.advance(10_000);
    ws = FakeSocket.last();
    ws.open();
    const { hello } = ws.takeSent()[0];
    assert.equal(hello.inboxSeq, '301');
    assert.equal(hello.storeGeneration, 'g1');
    // Restored from a backup, and the restored data has grown past 301 since:
    // only the generation tells that 301 means nothing there.
    ws.deliver({ welcome: { userId: 'alice', inboxSeq: '400', storeGeneration: 'g2' } });
    assert.deepEqual(seen.reset, [{ from: 301, to: 0 }]);
    ws.deliver({ message: msg(1) });
    ws.deliver({ message: msg(2) });
    assert.equal(client.lastInboxSeq, 2);
    assert.equal(storage.getItem('parley.v1:alice:storeGeneration'), 'g2');
    assert.deepEqual(seen.message.map((m) => m.inboxSeq), [301, 1, 2]);
  });

  it('resolves send on ack and applies the own message by the inbox rule', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 7);
    ws.takeSent();
    const p = client.send({ user: 'bob' }, 'hi', { clientMsgId: 'c1' });
    assert.equal(p.clientMsgId, 'c1');
    assert.deepEqual(ws.takeSent(), [{ send: { clientMsgId: 'c1', to: { user: 'bob' }, text: 'hi' } }]);
    assert.equal(client.pending().length, 1);
    ws.deliver({ ack: { clientMsgId: 'c1', messageId: 'm8', conversation: 'd:alice:bob', seq: '1', inboxSeq: '8', sentAt: 't' } });
    const ack = await p;
    assert.equal(ack.seq, 1);
    assert.equal(client.pending().length, 0);
    assert.deepEqual(seen.message.map((m) => [m.inboxSeq, m.from, m.text, m.clientMsgId]), [[8, 'alice', 'hi', 'c1']]);
    ws.deliver({ message: msg(8, { from: 'alice', to: { user: 'bob' }, text: 'hi', clientMsgId: 'c1' }) });
    ws.deliver({ ack: { clientMsgId: 'c1', messageId: 'm8', conversation: 'd:alice:bob', seq: '1', inboxSeq: '8' } });
    assert.equal(seen.message.length, 1, 'the echo and a repeated ack change nothing');
    assert.equal(seen.ack.length, 1);
  });

  it('queues sends while disconnected and resends unacked ones with the same clientMsgId', async () => {
    const outboxStorage = memory();
    const { client, clock, seen } = setup({ outboxStorage });
    let ws = FakeSocket.last();
    const early = client.send({ user: 'bob' }, 'before welcome', { clientMsgId: 'c0' });
    welcome(ws, 0);
    assert.deepEqual(ws.frames('send').map((s) => s.clientMsgId), ['c0']);
    const lost = client.send({ group: 'team' }, 'ack lost', { clientMsgId: 'c1' });
    assert.ok(outboxStorage.getItem('parley.v1:alice:outbox').includes('c1'));
    ws.serverClose(1001, 'draining');
    const offline = client.send({ user: 'bob' }, 'while offline', { clientMsgId: 'c2' });
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 0);
    assert.deepEqual(ws.frames('send').map((s) => s.clientMsgId), ['c0', 'c1', 'c2']);
    for (const [i, id] of ['c0', 'c1', 'c2'].entries()) {
      ws.deliver({ ack: { clientMsgId: id, messageId: `m${i + 1}`, conversation: 'x', seq: String(i + 1), inboxSeq: String(i + 1) } });
    }
    await Promise.all([early, lost, offline]);
    assert.equal(outboxStorage.getItem('parley.v1:alice:outbox'), null);
    assert.deepEqual(seen.ack.map((a) => a.clientMsgId), ['c0', 'c1', 'c2']);
    assert.deepEqual(seen.message.map((m) => m.clientMsgId), ['c0', 'c1', 'c2']);
  });

  it('a reloaded tab resends its persisted outbox and settles what the replay shows stored', async () => {
    const outboxStorage = memory();
    const storage = memory();
    const first = setup({ storage, outboxStorage });
    welcome(FakeSocket.last(), 0);
    first.client.send({ user: 'bob' }, 'one', { clientMsgId: 'k1' });
    first.client.send({ user: 'bob' }, 'two', { clientMsgId: 'k2' });
    // The page goes away before any ack.
    const second = setup({ storage, outboxStorage });
    assert.deepEqual(second.client.pending().map((e) => e.clientMsgId), ['k1', 'k2']);
    const ws = FakeSocket.last();
    welcome(ws, 1);
    assert.deepEqual(ws.frames('send').map((s) => s.clientMsgId), ['k1', 'k2']);
    assert.equal(ws.sent[0].hello.inboxSeq, '0');
    // The first send was stored before the drop: the replay from 0 shows it.
    assert.deepEqual(ws.frames('sync'), []);
    ws.deliver({ message: msg(1, { from: 'alice', clientMsgId: 'k1', text: 'one' }) });
    assert.deepEqual(second.client.pending().map((e) => e.clientMsgId), ['k2']);
    assert.deepEqual(second.seen.ack.map((a) => a.clientMsgId), ['k1']);
    assert.deepEqual(second.seen.message.map((m) => m.clientMsgId), ['k1']);
    // The repeat's original ack changes nothing.
    ws.deliver({ ack: { clientMsgId: 'k1', messageId: 'm1', conversation: 'd:alice:bob', seq: '1', inboxSeq: '1' } });
    assert.equal(second.seen.ack.length, 1);
    assert.equal(second.seen.message.length, 1);
  });

  it('retries a send refused with a retryable error and fails one refused for good', async () => {
    const { client, clock, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    const slow = client.send({ user: 'bob' }, 'a', { clientMsgId: 'r1' });
    const bad = client.send({ user: 'zed' }, 'b', { clientMsgId: 'r2' });
    ws.takeSent();
    ws.deliver({ error: { code: 'ERROR_CODE_RATE_LIMITED', message: 'slow down', clientMsgId: 'r1' } });
    ws.deliver({ error: { code: 'ERROR_CODE_NOT_FOUND', message: 'no user zed', clientMsgId: 'r2' } });
    await assert.rejects(bad, (e) => e instanceof ParleyError && e.code === 'ERROR_CODE_NOT_FOUND' && !e.retryable);
    assert.deepEqual(seen.sendFailed.map((f) => f.clientMsgId), ['r2']);
    assert.deepEqual(ws.takeSent(), []);
    clock.advance(1_000);
    assert.deepEqual(ws.frames('send').map((s) => s.clientMsgId), ['r1']);
    ws.deliver({ ack: { clientMsgId: 'r1', messageId: 'x', conversation: 'd:alice:bob', seq: '1', inboxSeq: '1' } });
    assert.equal((await slow).messageId, 'x');
  });

  it('backs off with growing delays and stops on 4001, saying why', () => {
    const { client, clock, seen } = setup();
    for (let i = 0; i < 3; i++) {
      FakeSocket.last().serverClose(1006);
      clock.advance(60_000);
    }
    const delays = seen.state.filter((s) => s.state === 'reconnecting').map((s) => s.delayMs);
    assert.deepEqual(delays, [500, 1000, 2000]);
    FakeSocket.last().serverClose(4001, 'token expired');
    assert.equal(client.state, 'stopped');
    assert.match(seen.stopped[0].message, /token expired/);
    const sockets = FakeSocket.all.length;
    clock.advance(600_000);
    assert.equal(FakeSocket.all.length, sockets, 'no reconnect after 4001');
  });

  it('honours 4003 reconnect: and no-reconnect:', () => {
    const { client, clock } = setup();
    welcome(FakeSocket.last(), 0);
    FakeSocket.last().serverClose(4003, 'reconnect: moving you');
    assert.equal(client.state, 'reconnecting');
    clock.advance(10_000);
    welcome(FakeSocket.last(), 0);
    FakeSocket.last().serverClose(4003, 'no-reconnect: account closed');
    assert.equal(client.state, 'stopped');
    assert.equal(FakeSocket.all.length, 2);
  });

  it('stops on 4029 and reopens on request', () => {
    const { client, clock } = setup();
    FakeSocket.last().serverClose(4029, 'too many sessions');
    assert.equal(client.state, 'stopped');
    clock.advance(600_000);
    assert.equal(FakeSocket.all.length, 1);
    client.open();
    assert.equal(FakeSocket.all.length, 2);
  });

  it('pings a quiet connection and drops it when nothing answers', () => {
    const { client, clock } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    clock.advance(20_000);
    const pings = ws.frames('ping');
    assert.equal(pings.length, 1);
    ws.deliver({ pong: { nonce: pings[0].nonce } });
    clock.advance(19_999);
    assert.equal(client.state, 'open');
    clock.advance(1);
    assert.equal(ws.frames('ping').length, 2);
    clock.advance(10_000);
    assert.equal(client.state, 'reconnecting', 'no pong: the socket is given up');
    assert.ok(ws.closedByClient);
  });

  it('drops a socket whose welcome never comes', () => {
    const { client, clock } = setup();
    FakeSocket.last().open();
    clock.advance(15_000);
    assert.equal(client.state, 'reconnecting');
  });

  it('sends the highest read once, and again after a reconnect if it was not sent', () => {
    const { client, clock } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    client.read('d:alice:bob', 3);
    client.read('d:alice:bob', 2);
    assert.deepEqual(ws.takeSent(), [{ read: { conversation: 'd:alice:bob', seq: '3' } }]);
    ws.serverClose(1006);
    client.read('g:team', 9);
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 0);
    assert.deepEqual(ws.frames('read'), [{ conversation: 'g:team', seq: '9' }]);
  });

  it('pages history below the starting position, across server-capped pages', async () => {
    const { client } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 10);
    const older = client.loadOlder(4);
    await settle();
    assert.deepEqual(ws.frames('sync'), [{ afterSeq: '6', limit: 4 }]);
    ws.deliver({ synced: { messages: [msg(7), msg(8)], inboxSeq: '10', more: true } });
    await settle();
    assert.deepEqual(ws.frames('sync')[1], { afterSeq: '8', limit: 2 });
    ws.deliver({ synced: { messages: [msg(9), msg(10)], inboxSeq: '10' } });
    const page = await older;
    assert.deepEqual(page.messages.map((m) => m.inboxSeq), [7, 8, 9, 10]);
    assert.equal(page.done, false);
    assert.equal(client.lastInboxSeq, 10, 'history does not move the inbox position');
  });

  it('loads history asked for before the first welcome, across failed attempts', async () => {
    const { client, clock } = setup();
    const older = client.loadOlder(5);
    FakeSocket.last().serverClose(1013, 'service unreachable');
    clock.advance(10_000);
    FakeSocket.last().serverClose(1013, 'service unreachable');
    clock.advance(10_000);
    const ws = FakeSocket.last();
    welcome(ws, 3);
    await settle();
    assert.deepEqual(ws.frames('sync'), [{ afterSeq: '0', limit: 3 }]);
    ws.deliver({ synced: { messages: [msg(1), msg(2), msg(3)], inboxSeq: '3' } });
    const page = await older;
    assert.deepEqual(page.messages.map((m) => m.inboxSeq), [1, 2, 3]);
    assert.equal(page.done, true);
  });

  it('rejects history and syncs still waiting when the client stops', async () => {
    const { client } = setup();
    const older = client.loadOlder(5);
    const page = client.sync({ afterSeq: 0 });
    await settle();
    FakeSocket.last().serverClose(4001, 'bad token');
    await assert.rejects(older, (e) => e instanceof ParleyError && e.code === 'STOPPED');
    await assert.rejects(page, (e) => e instanceof ParleyError && e.code === 'STOPPED');
  });

  it('re-sends an unanswered sync after reconnecting and ignores answers owed on the old socket', async () => {
    const { client, clock } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 5);
    const page = client.sync({ afterSeq: 0, limit: 2 });
    assert.equal(ws.frames('sync').length, 1);
    clock.advance(15_000);
    assert.equal(client.state, 'reconnecting');
    ws.deliver({ synced: { messages: [msg(99)] } });
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 5);
    assert.deepEqual(ws.frames('sync'), [{ afterSeq: '0', limit: 2 }]);
    ws.deliver({ synced: { messages: [msg(1), msg(2)], inboxSeq: '5', more: true } });
    const r = await page;
    assert.deepEqual(r.messages.map((m) => m.inboxSeq), [1, 2]);
    assert.equal(r.more, true);
  });
});

describe('ParleyClient: conversation list, history, edit and delete, blocking', () => {
  it('lists conversations page by page; the answers go one request at a time', async () => {
    const { client } = setup();
    const ws = FakeSocket.last();
    const first = client.listConversations({ limit: 2 });
    const second = client.listConversations({ pageToken: 'p2', limit: 2 });
    welcome(ws, 0);
    assert.deepEqual(ws.frames('listConversations'), [{ limit: 2 }], 'sent after welcome, one in flight');
    ws.deliver({ conversations: { conversations: [{ id: 'g:team', unread: '3' }, { id: 'd:alice:bob', peer: 'bob' }], nextPageToken: 'p2' } });
    const a = await first;
    assert.deepEqual(a.conversations.map((c) => [c.id, c.kind, c.unread]), [['g:team', 'group', 3], ['d:alice:bob', 'direct', 0]]);
    assert.equal(a.nextPageToken, 'p2');
    assert.deepEqual(ws.frames('listConversations')[1], { pageToken: 'p2', limit: 2 });
    ws.deliver({ conversations: {} });
    assert.deepEqual(await second, { conversations: [], nextPageToken: '' });
  });

  it('loads a conversation\'s history by beforeSeq, matching the answer by conversation', async () => {
    const { client } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    const page = client.history('d:alice:bob', { beforeSeq: 51, limit: 50 });
    assert.deepEqual(ws.frames('history'), [{ conversation: 'd:alice:bob', beforeSeq: '51', limit: 50 }]);
    ws.deliver({ history: { conversation: 'g:other', messages: [msg(1)] } });
    ws.deliver({ history: { conversation: 'd:alice:bob', messages: [msg(49, { seq: '1' }), msg(50, { seq: '2', deleted: true, text: '' })], more: true } });
    const r = await page;
    assert.deepEqual(r.messages.map((m) => [m.seq, m.deleted]), [[1, false], [2, true]]);
    assert.equal(r.more, true);
    assert.equal(client.lastInboxSeq, 0, 'history does not move the inbox position');
    assert.throws(() => client.history(''), TypeError);
  });

  it('rejects a refused request with the code and goes on with the next one', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    const denied = client.history('g:secret');
    const list = client.listConversations();
    ws.deliver({ error: { code: 'ERROR_CODE_PERMISSION_DENIED', message: 'not a member of g:secret' } });
    await assert.rejects(denied, (e) => e instanceof ParleyError && e.code === 'ERROR_CODE_PERMISSION_DENIED' && /g:secret/.test(e.message));
    assert.equal(seen.error.length, 0, 'taken by the request, not an error event');
    assert.equal(ws.frames('listConversations').length, 1);
    ws.deliver({ conversations: { conversations: [] } });
    await list;
    ws.deliver({ error: { code: 'ERROR_CODE_INVALID_ARGUMENT', message: 'stray' } });
    assert.deepEqual(seen.error.map((e) => e.code), ['ERROR_CODE_INVALID_ARGUMENT'], 'no request in flight: an event');
  });

  it('retries a request refused with a retryable error, and re-sends one unanswered across a reconnect', async () => {
    const { client, clock } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 0);
    const list = client.listConversations();
    ws.takeSent();
    ws.deliver({ error: { code: 'ERROR_CODE_RATE_LIMITED', message: 'slow down' } });
    assert.deepEqual(ws.takeSent(), []);
    clock.advance(1_000);
    assert.deepEqual(ws.frames('listConversations'), [{}]);
    ws.serverClose(1006);
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 0);
    assert.deepEqual(ws.frames('listConversations'), [{}]);
    ws.deliver({ conversations: { conversations: [{ id: 'g:team' }] } });
    assert.equal((await list).conversations.length, 1);
  });

  it('edits and deletes: sent with a clientMsgId, resolved by the ack, applied by the inbox rule as events', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 5);
    ws.takeSent();
    const edit = client.edit('d:alice:bob', 3, 'fixed', { clientMsgId: 'e1' });
    assert.equal(edit.clientMsgId, 'e1');
    assert.deepEqual(ws.takeSent(), [{ edit: { clientMsgId: 'e1', conversation: 'd:alice:bob', seq: '3', text: 'fixed' } }]);
    ws.deliver({ ack: { clientMsgId: 'e1', messageId: 'm6', conversation: 'd:alice:bob', seq: '4', inboxSeq: '6', sentAt: 't6' } });
    assert.equal((await edit).seq, 4);
    assert.deepEqual(seen.edit.map((m) => [m.inboxSeq, m.conversation, m.targetSeq, m.text, m.from]), [[6, 'd:alice:bob', 3, 'fixed', 'alice']]);
    assert.equal(seen.ack.length, 0, 'no ack event: that is for sends');
    // bob deletes his message 2 (live); an echo of our edit is a duplicate.
    ws.deliver({ message: msg(6, { kind: 'MESSAGE_KIND_EDIT', targetSeq: '3', from: 'alice', clientMsgId: 'e1' }) });
    ws.deliver({ message: msg(7, { kind: 'MESSAGE_KIND_DELETE', targetSeq: '2', seq: '5', text: '' }) });
    assert.deepEqual(seen.delete.map((m) => [m.inboxSeq, m.targetSeq, m.from]), [[7, 2, 'bob']]);
    assert.equal(seen.message.length, 0, 'edits and deletes are not message events');
    assert.equal(seen.edit.length, 1);
    const del = client.deleteMessage('d:alice:bob', 1, { clientMsgId: 'd1' });
    assert.deepEqual(ws.takeSent().pop(), { delete: { clientMsgId: 'd1', conversation: 'd:alice:bob', seq: '1' } });
    ws.deliver({ ack: { clientMsgId: 'd1', messageId: 'm8', conversation: 'd:alice:bob', seq: '6', inboxSeq: '8' } });
    await del;
    assert.deepEqual(seen.delete.map((m) => m.targetSeq), [2, 1]);
    assert.throws(() => client.edit('d:alice:bob', 0, 'x'), TypeError);
    assert.throws(() => client.edit('d:alice:bob', 1, ''), TypeError);
  });

  it('rejects an edit refused for good with its code, retries a retryable one, resends after a reconnect', async () => {
    const { client, clock, seen } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 0);
    const late = client.edit('d:alice:bob', 1, 'too late', { clientMsgId: 'e1' });
    const busy = client.deleteMessage('d:alice:bob', 2, { clientMsgId: 'd2' });
    ws.takeSent();
    ws.deliver({ error: { code: 'ERROR_CODE_FAILED_PRECONDITION', message: 'the edit window has passed', clientMsgId: 'e1' } });
    await assert.rejects(late, (e) => e instanceof ParleyError && e.code === 'ERROR_CODE_FAILED_PRECONDITION');
    ws.deliver({ error: { code: 'ERROR_CODE_UNAVAILABLE', message: 'later', clientMsgId: 'd2' } });
    clock.advance(1_000);
    assert.deepEqual(ws.takeSent(), [{ delete: { clientMsgId: 'd2', conversation: 'd:alice:bob', seq: '2' } }]);
    ws.serverClose(1006);
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 0);
    assert.deepEqual(ws.frames('delete'), [{ clientMsgId: 'd2', conversation: 'd:alice:bob', seq: '2' }]);
    // Stored before the drop: the replay shows it, which settles it.
    ws.deliver({ message: msg(1, { from: 'alice', kind: 'MESSAGE_KIND_DELETE', targetSeq: '2', clientMsgId: 'd2', text: '' }) });
    assert.equal((await busy).inboxSeq, 1);
    assert.deepEqual(seen.delete.map((m) => m.targetSeq), [2]);
    assert.equal(seen.error.length, 0);
  });

  it('blocks and unblocks, lists blocked users, and reports pushed changes', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    const blocked = client.block('bob');
    assert.deepEqual(ws.takeSent(), [{ block: { user: 'bob', blocked: true }, requestId: 'q1' }]);
    ws.deliver({ blocked: { users: ['bob'] } });
    assert.deepEqual(await blocked, ['bob']);
    // A change from another device of alice's.
    ws.deliver({ blocked: { users: ['bob', 'carol'] } });
    const unblocked = client.block('bob', false);
    assert.deepEqual(ws.takeSent(), [{ block: { user: 'bob', blocked: false }, requestId: 'q2' }]);
    ws.deliver({ blocked: {} });
    assert.deepEqual(await unblocked, []);
    const list = client.listBlocked();
    assert.deepEqual(ws.takeSent(), [{ listBlocked: {}, requestId: 'q3' }]);
    ws.deliver({ blocked: { users: ['carol'] } });
    assert.deepEqual(await list, ['carol']);
    assert.deepEqual(seen.blocked.map((b) => b.users), [['bob'], ['bob', 'carol'], [], ['carol']]);
    assert.throws(() => client.block(''), TypeError);
  });

  it('gives a receipt from this user\'s other device its unread count (0 when the JSON omits it)', () => {
    const { seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.deliver({ receipt: { conversation: 'd:alice:bob', user: 'alice', seq: '4', unread: '2' } });
    ws.deliver({ receipt: { conversation: 'd:alice:bob', user: 'alice', seq: '6' } });
    ws.deliver({ receipt: { conversation: 'd:alice:bob', user: 'bob', seq: '6' } });
    assert.deepEqual(seen.receipt.map((r) => [r.user, r.seq, r.unread]), [['alice', 4, 2], ['alice', 6, 0], ['bob', 6, null]]);
  });

  it('takes only the error that names its requestId as its refusal', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    const history = client.history('g:team');
    const [sent] = ws.takeSent();
    assert.equal(sent.requestId, 'q1');
    // Another request's error (a read's, say) is not this query's refusal.
    ws.deliver({ error: { code: 'ERROR_CODE_NOT_FOUND', message: 'other' }, requestId: 'x9' });
    assert.deepEqual(seen.error.map((e) => e.message), ['other']);
    ws.deliver({ error: { code: 'ERROR_CODE_PERMISSION_DENIED', message: 'not a member' }, requestId: 'q1' });
    await assert.rejects(history, (e) => e.code === 'ERROR_CODE_PERMISSION_DENIED');
  });

  it('rejects requests still waiting when the client stops', async () => {
    const { client } = setup();
    const list = client.listConversations();
    const blocked = client.listBlocked();
    FakeSocket.last().serverClose(4001, 'bad token');
    await assert.rejects(list, (e) => e.code === 'STOPPED');
    await assert.rejects(blocked, (e) => e.code === 'STOPPED');
  });
});

describe('ParleyClient: pending changes across reloads and users', () => {
  it('a reloaded tab resends its pending edits, deletes and group changes; their acks or events settle them', () => {
    const outboxStorage = memory();
    const storage = memory();
    const first = setup({ storage, outboxStorage });
    welcome(FakeSocket.last(), 5);
    first.client.edit('d:alice:bob', 3, 'fixed', { clientMsgId: 'e1' });
    first.client.createGroup('Team', ['bob'], { clientMsgId: 'g1' });
    first.client.deleteMessage('d:alice:bob', 2, { clientMsgId: 'd1' });
    assert.ok(outboxStorage.getItem('parley.v1:alice:changes').includes('e1'));
    // The page goes away before any ack.
    const second = setup({ storage, outboxStorage });
    const ws = FakeSocket.last();
    welcome(ws, 5);
    assert.deepEqual(
      ws.sent.filter((f) => !('hello' in f) && !('sync' in f) && !('ping' in f)),
      [
        { edit: { clientMsgId: 'e1', conversation: 'd:alice:bob', seq: '3', text: 'fixed' } },
        { createGroup: { clientMsgId: 'g1', title: 'Team', members: ['bob'] } },
        { delete: { clientMsgId: 'd1', conversation: 'd:alice:bob', seq: '2' } },
      ],
    );
    ws.deliver({ ack: { clientMsgId: 'e1', messageId: 'm6', conversation: 'd:alice:bob', seq: '4', inboxSeq: '6' } });
    assert.deepEqual(second.seen.edit.map((m) => [m.inboxSeq, m.targetSeq, m.text]), [[6, 3, 'fixed']]);
    // The delete was stored before the reload: its event settles it.
    ws.deliver({ message: msg(7, { kind: 'MESSAGE_KIND_DELETE', targetSeq: '2', seq: '5', text: '', from: 'alice', clientMsgId: 'd1' }) });
    assert.deepEqual(second.seen.delete.map((m) => m.targetSeq), [2]);
    assert.ok(!outboxStorage.getItem('parley.v1:alice:changes').includes('d1'));
    ws.deliver({ ack: { clientMsgId: 'g1', messageId: 'm8', conversation: 'g:g1', seq: '1', inboxSeq: '0' } });
    assert.equal(outboxStorage.getItem('parley.v1:alice:changes'), null);
    // Nothing goes out again on the next connection.
    ws.serverClose(1001, 'draining');
    second.clock.advance(10_000);
    const next = FakeSocket.last();
    welcome(next, 7);
    assert.deepEqual(next.frames('edit').concat(next.frames('delete'), next.frames('createGroup')), []);
  });

  it('ignores stored changes it cannot read', () => {
    const outboxStorage = memory();
    outboxStorage.setItem('parley.v1:alice:changes', JSON.stringify([
      null, { kind: 'send', clientMsgId: 'x', frame: { send: { clientMsgId: 'x' } } },
      { kind: 'edit', clientMsgId: 'y', frame: { edit: { clientMsgId: 'other' } } }, 'garbage',
    ]));
    setup({ outboxStorage });
    const ws = FakeSocket.last();
    welcome(ws, 0);
    assert.deepEqual(ws.sent.filter((f) => !('hello' in f) && !('ping' in f)), []);
    assert.equal(outboxStorage.getItem('parley.v1:alice:changes'), null);
    outboxStorage.setItem('parley.v1:alice:changes', '{not json');
    setup({ outboxStorage });
    welcome(FakeSocket.last(), 0);
  });

  it('a token for another user keeps the previous user\'s pending sends and changes for that user, never sent as the new one', async () => {
    const outboxStorage = memory();
    const storage = memory();
    const { client } = setup({ storage, outboxStorage });
    FakeSocket.last().open();
    // Not welcomed yet: both stay pending.
    const sent = client.send({ user: 'bob' }, 'from alice', { clientMsgId: 's1' });
    const edited = client.edit('d:alice:bob', 1, 'alice edits', { clientMsgId: 'e1' });
    client.open({ token: token('carol') });
    await assert.rejects(sent, (e) => e instanceof ParleyError && e.code === 'USER_CHANGED');
    await assert.rejects(edited, (e) => e instanceof ParleyError && e.code === 'USER_CHANGED');
    const ws = FakeSocket.last();
    welcome(ws, 0, 'carol');
    assert.deepEqual(ws.frames('send').concat(ws.frames('edit')), []);
    assert.deepEqual(client.pending(), []);
    assert.equal(outboxStorage.getItem('parley.v1:carol:outbox'), null);
    assert.equal(outboxStorage.getItem('parley.v1:carol:changes'), null);
    // Alice's next client sends them.
    setup({ storage, outboxStorage });
    const again = FakeSocket.last();
    welcome(again, 0);
    assert.deepEqual(again.frames('send').map((f) => f.clientMsgId), ['s1']);
    assert.deepEqual(again.frames('edit').map((f) => f.clientMsgId), ['e1']);
  });
});

describe('ParleyClient: groups', () => {
  const event = (inboxSeq, seq, groupEvent, extra = {}) =>
    msg(inboxSeq, {
      conversation: 'g:g1',
      seq: String(seq),
      to: { group: 'g1' },
      text: undefined,
      kind: 'MESSAGE_KIND_GROUP_EVENT',
      groupEvent,
      ...extra,
    });

  it('normalizes group events, roles and groups of the JSON mapping', () => {
    assert.equal(messageKind('MESSAGE_KIND_GROUP_EVENT'), 'groupEvent');
    assert.equal(messageKind(3), 'groupEvent');
    assert.deepEqual([groupRole(undefined), groupRole('GROUP_ROLE_ADMIN'), groupRole(2)], ['member', 'admin', 'owner']);
    const m = normalizeMessage(event(4, 2, { type: 'GROUP_EVENT_TYPE_ROLE_CHANGED', actor: 'alice', users: ['bob'], role: 'GROUP_ROLE_ADMIN' }));
    assert.deepEqual([m.kind, m.groupEvent], ['groupEvent', { type: 'roleChanged', actor: 'alice', users: ['bob'], title: '', role: 'admin' }]);
    // An operator's change has no actor; JSON omits it, and the role MEMBER.
    const op = normalizeMessage(event(5, 3, { type: 'GROUP_EVENT_TYPE_MEMBERS_ADDED', users: ['dave'] }, { from: undefined }));
    assert.deepEqual([op.from, op.groupEvent.actor, op.groupEvent.type, op.groupEvent.role], ['', '', 'membersAdded', 'member']);
    assert.deepEqual(
      normalizeGroup({ id: 'g1', title: 'Trip', members: [{ user: 'alice', role: 'GROUP_ROLE_OWNER' }, { user: 'bob' }] }),
      { id: 'g1', title: 'Trip', members: [{ user: 'alice', role: 'owner' }, { user: 'bob', role: 'member' }], createdAt: '' },
    );
  });

  it('creates a group: resolved by the ack, its own created event fetched by the inbox rule', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 5);
    ws.takeSent();
    const created = client.createGroup('Trip', ['bob', 'bob', 'carol'], { clientMsgId: 'cg1' });
    assert.equal(created.clientMsgId, 'cg1');
    assert.deepEqual(ws.takeSent(), [{ createGroup: { clientMsgId: 'cg1', title: 'Trip', members: ['bob', 'carol'] } }]);
    ws.deliver({ ack: { clientMsgId: 'cg1', messageId: 'm6', conversation: 'g:g1', seq: '1', inboxSeq: '6', sentAt: 't6' } });
    const ack = await created;
    assert.deepEqual([ack.group, ack.conversation, ack.seq], ['g1', 'g:g1', 1]);
    // The event itself (what the server stored) comes from a sync.
    assert.deepEqual(ws.takeSent(), [{ sync: { afterSeq: '5', limit: 200 } }]);
    const createdEvent = event(6, 1, { type: 'GROUP_EVENT_TYPE_CREATED', actor: 'alice', users: ['alice', 'bob', 'carol'], title: 'Trip' }, {
      from: 'alice',
      text: 'Trip',
      clientMsgId: 'cg1',
    });
    ws.deliver({ synced: { messages: [createdEvent], inboxSeq: '6' } });
    assert.deepEqual(seen.groupEvent.map((m) => [m.inboxSeq, m.conversation, m.groupEvent.type, m.groupEvent.users.join()]), [
      [6, 'g:g1', 'created', 'alice,bob,carol'],
    ]);
    assert.equal(seen.message.length, 0, 'group events are not message events');
    assert.equal(client.lastInboxSeq, 6);
    // Others' changes arrive live, in order with the other messages.
    ws.deliver({ message: event(7, 2, { type: 'GROUP_EVENT_TYPE_MEMBER_LEFT', actor: 'bob', users: ['bob'] }) });
    ws.deliver({ message: msg(8, { conversation: 'g:g1', to: { group: 'g1' }, from: 'carol' }) });
    assert.deepEqual(seen.groupEvent.map((m) => m.groupEvent.type), ['created', 'memberLeft']);
    assert.equal(seen.message.length, 1);
    assert.throws(() => client.createGroup('', []), TypeError);
    assert.throws(() => client.createGroup('x', ['']), TypeError);
  });

  it('sends each kind of change, and rejects a refused one with its code', async () => {
    const { client, seen } = setup();
    const ws = FakeSocket.last();
    welcome(ws, 0);
    ws.takeSent();
    const changes = [
      [{ addMembers: ['carol'] }, { addMembers: { users: ['carol'] } }],
      [{ removeMembers: ['bob'] }, { removeMembers: { users: ['bob'] } }],
      [{ rename: 'Trip 2026' }, { rename: 'Trip 2026' }],
      [{ leave: true }, { leave: {} }],
      [{ setRole: { user: 'bob', role: 'admin' } }, { setRole: { user: 'bob', role: 'GROUP_ROLE_ADMIN' } }],
    ];
    const sent = [];
    for (const [i, [change, frame]] of changes.entries()) {
      sent.push(client.updateGroup('g:g1', change, { clientMsgId: `u${i}` }));
      assert.deepEqual(ws.takeSent(), [{ updateGroup: { clientMsgId: `u${i}`, group: 'g1', ...frame } }]);
    }
    ws.deliver({ error: { code: 'ERROR_CODE_PERMISSION_DENIED', message: 'only the owner and admins may add members', clientMsgId: 'u0' } });
    await assert.rejects(sent[0], (e) =>
      e instanceof ParleyError && e.code === 'ERROR_CODE_PERMISSION_DENIED' && /owner and admins/.test(e.message));
    assert.equal(seen.error.length, 0, 'taken by the change, not an error event');
    assert.throws(() => client.updateGroup('g1', {}), TypeError);
    assert.throws(() => client.updateGroup('g1', { rename: 'a', leave: true }), TypeError);
    assert.throws(() => client.updateGroup('g1', { addMembers: [] }), TypeError);
    assert.throws(() => client.updateGroup('g1', { setRole: { user: 'bob', role: 'king' } }), TypeError);
    assert.throws(() => client.updateGroup('', { leave: true }), TypeError);
  });

  it('resends an unacked change after a reconnect; the replay of its event settles it', async () => {
    const { client, clock, seen } = setup();
    let ws = FakeSocket.last();
    welcome(ws, 3);
    const rename = client.updateGroup('g1', { rename: 'New' }, { clientMsgId: 'r1' });
    ws.serverClose(1006);
    clock.advance(10_000);
    ws = FakeSocket.last();
    welcome(ws, 4);
    assert.deepEqual(ws.frames('updateGroup'), [{ clientMsgId: 'r1', group: 'g1', rename: 'New' }]);
    ws.deliver({ message: event(4, 3, { type: 'GROUP_EVENT_TYPE_RENAMED', actor: 'alice', title: 'New' }, { from: 'alice', clientMsgId: 'r1', text: 'New' }) });
    assert.equal((await rename).inboxSeq, 4);
    assert.deepEqual(seen.groupEvent.map((m) => m.groupEvent.title), ['New']);
    // The repeat's ack (the original one) applies nothing twice.
    ws.deliver({ ack: { clientMsgId: 'r1', messageId: 'm4', conversation: 'g:g1', seq: '3', inboxSeq: '4' } });
    assert.deepEqual(ws.frames('sync'), []);
    assert.equal(seen.groupEvent.length, 1);
  });

  it('reads a group with getGroup, matched by id; a refusal rejects it', async () => {
    const { client } = setup();
    const ws = FakeSocket.last();
    const info = client.getGroup('g:g1');
    welcome(ws, 0);
    assert.deepEqual(ws.frames('getGroup'), [{ group: 'g1' }]);
    ws.deliver({ group: { id: 'g1', title: 'Trip', members: [{ user: 'alice', role: 'GROUP_ROLE_OWNER' }, { user: 'bob', role: 'GROUP_ROLE_ADMIN' }], createdAt: 't' } });
    assert.deepEqual(await info, { id: 'g1', title: 'Trip', members: [{ user: 'alice', role: 'owner' }, { user: 'bob', role: 'admin' }], createdAt: 't' });
    const denied = client.getGroup('g2');
    ws.deliver({ error: { code: 'ERROR_CODE_PERMISSION_DENIED', message: 'user "alice" is not a member of group "g2"' } });
    await assert.rejects(denied, (e) => e.code === 'ERROR_CODE_PERMISSION_DENIED');
    assert.throws(() => client.getGroup(''), TypeError);
  });
});
