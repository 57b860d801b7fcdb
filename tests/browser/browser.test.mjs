// The browser test: Debian's headless Chromium, driven by playwright-core,
// runs web/ (served by the real parley-gateway) against the real
// parley-service. Two people, alice (desktop width) and bob (phone width),
// chat 1:1 and in a group, see acks, read receipts, typing and presence;
// then the gateway is restarted, and separately the service is killed and
// restarted on the same data dir and link address, and both pages recover
// with every message shown exactly once, in the same order on both sides.
//
//   PARLEY_BIN_DIR   where service/, gateway/, tools/ binaries are
//                    (default <repo>/bazel-bin)
//   PARLEY_ARTIFACTS screenshots, process logs, page consoles
//                    (default <repo>/tests/artifacts)
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Run through tests/browser/run.sh, or: node --test tests/browser/

import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Stack } from './stack.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN_DIR = process.env.PARLEY_BIN_DIR || path.join(REPO, 'bazel-bin');
const ARTIFACTS = process.env.PARLEY_ARTIFACTS || path.join(REPO, 'tests', 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags that work on these machines (see BUILDING.md); playwright adds
// a fresh --user-data-dir of its own.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
// Waits for a page state. Generous: after a restart the gateway's link and
// the pages' backoff take a few seconds; these are deadlines, not sleeps.
const WAIT_MS = 30000;
const RECOVER_MS = 90000;

const stack = new Stack({ binDir: BIN_DIR, artifacts: ARTIFACTS, webRoot: path.join(REPO, 'web') });
// If this test is interrupted, its servers must not outlive it.
process.on('exit', () => stack.killNow());
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stack.killNow();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}
let service;
let gateway;
let browser;
/** @type {Record<string, {context: any, page: any, token: string}>} */
const people = {};
let failed = false;
let shot = 0;

const DM = 'd:alice:bob';
const TEAM = 'g:team';
// What each side must end up showing in d:alice:bob, in conversation order;
// entries that were sent concurrently are sets (either order is right).
const dmExpected = [];

/**
 * A scenario step: skipped once a critical step failed, since every step
 * builds on the state the previous ones left.
 */
function step(name, fn, { critical = true } = {}) {
  it(name, async (t) => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await fn(t);
    } catch (e) {
      if (critical) failed = true;
      await screenshotAll(`failed-${name.replace(/\W+/g, '-').slice(0, 40)}`).catch(() => {});
      throw e;
    }
  });
}

async function screenshotAll(label) {
  shot += 1;
  for (const [name, p] of Object.entries(people)) {
    await p.page.screenshot({ path: path.join(ARTIFACTS, `browser-${String(shot).padStart(2, '0')}-${label}-${name}.png`) });
  }
}

// ------------------------------------------------------------ page helpers

async function openPage(name, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const consoleLog = path.join(ARTIFACTS, `browser-console-${name}.log`);
  page.on('console', (m) => appendFileSync(consoleLog, `[${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => appendFileSync(consoleLog, `[pageerror] ${e.stack || e}\n`));
  people[name].context = context;
  people[name].page = page;
  await page.goto(`http://${gateway.address}/?token=${encodeURIComponent(people[name].token)}&device=${name}-browser`);
  await waitConnected(page);
  return page;
}

function waitConnected(page, timeout = WAIT_MS) {
  return page.waitForSelector('[data-testid=status][data-state=open]', { timeout });
}

function waitDisconnected(page) {
  return page.waitForSelector('[data-testid=status]:not([data-state=open])', { timeout: WAIT_MS });
}

/** Opens a conversation from the list (going back first at phone width). */
async function openConversation(page, id) {
  if (await page.locator('#back').isVisible()) await page.click('#back');
  await page.click(`button[data-conversation="${id}"]`, { timeout: WAIT_MS });
  await page.waitForSelector(`#chat[data-conversation="${id}"] #chat-open:not([hidden])`, { timeout: WAIT_MS });
}

/** Starts (or opens) a chat by typing its name, as a person would. */
async function startChat(page, name) {
  if (await page.locator('#back').isVisible()) await page.click('#back');
  await page.fill('[data-testid=newchat-input]', name);
  await page.press('[data-testid=newchat-input]', 'Enter');
  await page.waitForSelector('#chat-open:not([hidden])', { timeout: WAIT_MS });
}

/** Types a message and presses Enter. */
async function send(page, text) {
  await page.fill('[data-testid=composer]', text);
  await page.press('[data-testid=composer]', 'Enter');
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#message-list .message')].some((li) => li.querySelector('.text').textContent === t),
    text,
    { timeout: WAIT_MS },
  );
}

/** Waits until the open conversation shows `text` once in one of `states`. */
function waitMessage(page, text, states, timeout = WAIT_MS) {
  return page.waitForFunction(
    ([t, s]) => {
      const hits = [...document.querySelectorAll('#message-list .message')].filter(
        (li) => li.querySelector('.text').textContent === t,
      );
      return hits.length === 1 && s.includes(hits[0].dataset.state);
    },
    [text, states],
    { timeout, polling: 100 },
  );
}

/** The open conversation as [{text, seq, state}], in display order. */
function shown(page) {
  return page.$$eval('#message-list .message', (lis) =>
    lis.map((li) => ({ text: li.querySelector('.text').textContent, seq: Number(li.dataset.seq), state: li.dataset.state })),
  );
}

function waitUnread(page, id, n) {
  // Attached, not visible: at phone width the list hides behind the chat.
  return page.waitForSelector(`button[data-conversation="${id}"][data-unread="${n}"]`, { state: 'attached', timeout: WAIT_MS });
}

/** All expected texts of d:alice:bob, flattened. */
function dmTexts() {
  return dmExpected.flatMap((e) => (Array.isArray(e) ? e : [e]));
}

/**
 * Waits until both pages show d:alice:bob exactly as expected: every text
 * once, seqs 1..N in order, concurrent sends in either order.
 */
async function assertDmOnBothSides(timeout = RECOVER_MS) {
  const texts = dmTexts();
  for (const name of ['alice', 'bob']) {
    const { page } = people[name];
    await page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll('#message-list .message')].map((li) => li.querySelector('.text').textContent);
        return got.length === want.length && [...got].sort().join('\n') === [...want].sort().join('\n');
      },
      texts,
      { timeout, polling: 200 },
    ).catch(async (e) => {
      const got = await shown(page);
      throw new Error(`${name} does not show d:alice:bob as expected.\nwant (any order within []): ${JSON.stringify(dmExpected)}\ngot: ${JSON.stringify(got)}\n${e.message}`);
    });
  }
  const a = await shown(people.alice.page);
  const b = await shown(people.bob.page);
  assert.deepEqual(a.map((m) => m.text), b.map((m) => m.text), 'both sides show the same order');
  assert.deepEqual(a.map((m) => m.seq), a.map((_, i) => i + 1), 'conversation seqs 1..N, no gaps or repeats');
  // The fixed parts of the order.
  let i = 0;
  for (const e of dmExpected) {
    const group = Array.isArray(e) ? e : [e];
    assert.deepEqual(a.slice(i, i + group.length).map((m) => m.text).sort(), [...group].sort(), `messages ${i + 1}..${i + group.length}`);
    i += group.length;
  }
}

// ------------------------------------------------------------ the scenario

describe('browser client against the real binaries', () => {
  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await stack.stopAll();
  });

  step('the binaries and the browser are there', () => {
    const missing = stack.missingBinaries();
    assert.deepEqual(missing, [], `Parley binaries are not built (bazel build //service:parley-service //gateway:parley-gateway //tools:parleyctl, or set PARLEY_BIN_DIR)`);
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (tests/browser/run.sh does it)`);
  });

  step('starts parley-service and parley-gateway, creates users and a group', async () => {
    service = await stack.startService();
    gateway = await stack.startGateway(service.linkAddress);
    for (const u of ['alice', 'bob', 'carol']) await stack.ctl(service, 'users', 'create', u);
    await stack.ctl(service, 'groups', 'create', 'team', 'alice', 'bob', 'carol');
    for (const u of ['alice', 'bob']) {
      const token = (await stack.ctl(service, 'token', u, '--ttl', '1h')).trim();
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `parleyctl token ${u} prints a JWT`);
      people[u] = { token };
    }
  });

  step('alice (desktop) and bob (phone) sign in through the URL token', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    await openPage('alice', { width: 1200, height: 800 });
    await openPage('bob', { width: 390, height: 780 });
    for (const name of ['alice', 'bob']) {
      const { page } = people[name];
      assert.equal(await page.textContent('[data-testid=me]'), name);
      assert.ok(!page.url().includes('token='), 'the token is taken out of the address bar');
    }
  });

  step('alice writes to bob: pending, then stored (ack); bob sees it unread', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await startChat(alice, 'bob');
    await send(alice, 'Hi Bob, this is Alice.');
    dmExpected.push('Hi Bob, this is Alice.');
    await waitMessage(alice, 'Hi Bob, this is Alice.', ['sent', 'delivered']);
    await waitUnread(bob, DM, 1);
    await screenshotAll('first-message');
  });

  step('bob opens it, alice sees it read; bob answers and alice reads it', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await openConversation(bob, DM);
    await waitMessage(bob, 'Hi Bob, this is Alice.', ['received']);
    await waitMessage(alice, 'Hi Bob, this is Alice.', ['read']);
    await send(bob, 'Hello Alice! Bob here.');
    dmExpected.push('Hello Alice! Bob here.');
    // alice has the conversation open, so she reads it at once.
    await waitMessage(alice, 'Hello Alice! Bob here.', ['received']);
    await waitMessage(bob, 'Hello Alice! Bob here.', ['read']);
    await assertDmOnBothSides(WAIT_MS);
    await screenshotAll('read-receipts');
  });

  step('typing and presence show on the other side', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await alice.waitForSelector('#chat-subtitle:text("online")', { timeout: WAIT_MS });
    await bob.fill('[data-testid=composer]', 'typing something');
    await alice.waitForSelector('#chat-subtitle.typing:text("bob is typing")', { timeout: WAIT_MS });
    await bob.fill('[data-testid=composer]', '');
  }, { critical: false });

  step('alice writes to the group; bob reads it there', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await startChat(alice, '#team');
    await send(alice, 'Hello team!');
    await waitMessage(alice, 'Hello team!', ['sent', 'delivered']);
    await waitUnread(bob, TEAM, 1);
    await openConversation(bob, TEAM);
    await waitMessage(bob, 'Hello team!', ['received']);
    await bob.waitForSelector('#message-list .message .from:text("alice")', { timeout: WAIT_MS });
    await waitMessage(alice, 'Hello team!', ['read']);
    assert.match(await alice.textContent('#message-list .message[data-state=read] .meta'), /Read by bob/);
    await screenshotAll('group');
    await openConversation(alice, DM);
    await openConversation(bob, DM);
  });

  step('the gateway restarts: both pages reconnect, what was sent meanwhile arrives once', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    const address = gateway.address;
    await gateway.stop('SIGTERM');
    await Promise.all([waitDisconnected(alice), waitDisconnected(bob)]);
    await send(alice, 'Alice, while the gateway was down.');
    await send(bob, 'Bob, while the gateway was down.');
    dmExpected.push(['Alice, while the gateway was down.', 'Bob, while the gateway was down.']);
    await waitMessage(alice, 'Alice, while the gateway was down.', ['pending']);
    await waitMessage(bob, 'Bob, while the gateway was down.', ['pending']);
    await screenshotAll('gateway-down');
    gateway = await stack.startGateway(service.linkAddress, { listenAddress: address });
    await Promise.all([waitConnected(alice, RECOVER_MS), waitConnected(bob, RECOVER_MS)]);
    await waitMessage(alice, 'Alice, while the gateway was down.', ['sent', 'delivered', 'read'], RECOVER_MS);
    await waitMessage(bob, 'Bob, while the gateway was down.', ['sent', 'delivered', 'read'], RECOVER_MS);
    await assertDmOnBothSides();
    await send(alice, 'Alice, after the gateway came back.');
    dmExpected.push('Alice, after the gateway came back.');
    await waitMessage(bob, 'Alice, after the gateway came back.', ['received']);
    await assertDmOnBothSides();
    await screenshotAll('gateway-recovered');
  });

  step('the service is killed (bob reloads meanwhile) and restarts on the same data: nothing lost or doubled', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    const link = service.linkAddress;
    await service.stop('SIGKILL');
    await send(alice, 'Alice, while the service was down.');
    await send(bob, 'Bob, while the service was down.');
    dmExpected.push(['Alice, while the service was down.', 'Bob, while the service was down.']);
    // Nothing can store them now: they wait, shown as pending.
    await waitMessage(alice, 'Alice, while the service was down.', ['pending']);
    await waitMessage(bob, 'Bob, while the service was down.', ['pending']);
    await screenshotAll('service-down');
    // bob reloads meanwhile: his tab's outbox keeps the unsent message.
    await bob.reload();
    await bob.waitForSelector('#app:not([hidden])', { timeout: WAIT_MS });
    await openConversation(bob, DM);
    await waitMessage(bob, 'Bob, while the service was down.', ['pending']);
    service = await stack.startService({ linkAddress: link });
    await waitMessage(alice, 'Alice, while the service was down.', ['sent', 'delivered', 'read'], RECOVER_MS);
    await waitMessage(bob, 'Bob, while the service was down.', ['sent', 'delivered', 'read'], RECOVER_MS);
    await Promise.all([waitConnected(alice, RECOVER_MS), waitConnected(bob, RECOVER_MS)]);
    await assertDmOnBothSides();
    await send(bob, 'Bob, after the service came back.');
    dmExpected.push('Bob, after the service came back.');
    await waitMessage(alice, 'Bob, after the service came back.', ['received']);
    await assertDmOnBothSides();
    await screenshotAll('service-recovered');
  });

  step('bob reloads: history comes back from the inbox, each message once', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await bob.reload();
    await waitConnected(bob);
    // Read positions survive the reload: nothing shows as unread.
    await waitUnread(bob, DM, 0);
    await openConversation(bob, DM);
    await assertDmOnBothSides(WAIT_MS);
    await send(alice, 'Alice, after Bob reloaded.');
    dmExpected.push('Alice, after Bob reloaded.');
    await waitMessage(bob, 'Alice, after Bob reloaded.', ['received']);
    await waitMessage(alice, 'Alice, after Bob reloaded.', ['read']);
    await assertDmOnBothSides(WAIT_MS);
    await openConversation(bob, TEAM);
    const team = await shown(bob);
    assert.deepEqual(team.map((m) => m.text), ['Hello team!']);
    await openConversation(bob, DM);
    await screenshotAll('after-reload');
  });

  step('an operator broadcast shows on both pages', async () => {
    await stack.ctl(service, 'broadcast', 'Maintenance at 22:00 UTC');
    for (const name of ['alice', 'bob']) {
      await people[name].page.waitForSelector('#announcement:not([hidden]) >> text=Maintenance at 22:00 UTC', { timeout: WAIT_MS });
    }
  }, { critical: false });

  step('on a new device, scrolling up (Home key) loads older history page by page', async () => {
    // 130 messages from carol: more than one page of alice's inbox.
    const total = 130;
    for (let i = 1; i <= total; i++) {
      await stack.ctl(service, 'send', '--from', 'carol', '--to', 'alice', '--id', `history-${i}`, `History ${i}`);
    }
    // alice's open page gets them live.
    await waitUnread(people.alice.page, 'd:alice:carol', total);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const page = await context.newPage();
      await page.goto(`http://${gateway.address}/?token=${encodeURIComponent(people.alice.token)}&device=alice-second`);
      await waitConnected(page);
      await openConversation(page, 'd:alice:carol');
      await page.waitForSelector('#message-list .message', { timeout: WAIT_MS });
      const first = await shown(page);
      assert.ok(first.length < total, `the first page is not the whole history (${first.length} of ${total})`);
      assert.equal(first[first.length - 1].text, `History ${total}`);
      await page.focus('#messages');
      while ((await shown(page)).length < total) {
        const before = (await shown(page)).length;
        await page.keyboard.press('Home');
        await page.waitForFunction((n) => document.querySelectorAll('#message-list .message').length > n, before, { timeout: WAIT_MS });
      }
      const all = await shown(page);
      assert.deepEqual(all.map((m) => m.text), Array.from({ length: total }, (_, i) => `History ${i + 1}`));
      assert.deepEqual(all.map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1));
      await page.waitForSelector('#history-end:not([hidden])', { timeout: WAIT_MS });
      // What was read before this device existed is not news here.
      await waitUnread(page, DM, 0);
      await page.screenshot({ path: path.join(ARTIFACTS, `browser-${String(++shot).padStart(2, '0')}-history-alice-second-device.png`) });
    } finally {
      await context.close();
    }
  }, { critical: false });

  step('a bad token is refused with the reason, and the page asks to sign in', async () => {
    const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
    try {
      const page = await context.newPage();
      await page.goto(`http://${gateway.address}/?token=not.a.token`);
      await page.waitForSelector('#signin:not([hidden]) #signin-error:not([hidden])', { timeout: WAIT_MS });
      assert.match(await page.textContent('#signin-error'), /token/i);
      await page.screenshot({ path: path.join(ARTIFACTS, `browser-${String(++shot).padStart(2, '0')}-bad-token.png`) });
    } finally {
      await context.close();
    }
  }, { critical: false });

  step('an operator kick with --no-reconnect stops bob\'s page and says why; Reconnect works', async () => {
    const { page: bob } = people.bob;
    await stack.ctl(service, 'kick', 'bob', '--reason', 'testing kicks', '--no-reconnect');
    await bob.waitForSelector('[data-testid=status][data-state=stopped]', { timeout: WAIT_MS });
    assert.match(await bob.textContent('[data-testid=status]'), /operator.*testing kicks/);
    await screenshotAll('kicked');
    await bob.click('#status-action');
    await waitConnected(bob);
    await send(people.alice.page, 'Alice, after the kick.');
    dmExpected.push('Alice, after the kick.');
    await waitMessage(bob, 'Alice, after the kick.', ['received']);
    await assertDmOnBothSides(WAIT_MS);
    await screenshotAll('final');
  }, { critical: false });
});
