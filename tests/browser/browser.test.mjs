// The browser test: Debian's headless Chromium, driven by playwright-core,
// runs web/ (served by the real parley-gateway) against the real
// parley-service. Two people, alice (desktop width) and bob (phone width),
// chat 1:1 and in a group, see acks, read receipts, typing and presence;
// then the gateway is restarted, and separately the service is killed and
// restarted on the same data dir and link address, and both pages recover
// with every message shown exactly once, in the same order on both sides.
// Then the features of the server's conversation list and history: a second
// device of alice shows the same unread counts, reading there clears them on
// the first; scrolling up loads a conversation's older history; alice edits
// and deletes her messages (bob sees "edited" and a tombstone, also after a
// reload); bob blocks alice and her DM is refused, shown as such; messages
// dated two days back (in the stopped service's SQLite file) get day
// separators, and editing one of them is refused (the edit window). Last,
// groups managed from the page: alice creates one with bob, adds carol (who
// gets it with its history), bob as a plain member is refused adding
// someone, alice renames it and makes carol an admin (and, its owner, may
// not leave), bob leaves, and alice removes carol, whose page marks the
// group as left.
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
const CAROL = 'd:alice:carol';
const HISTORY_TOTAL = 130;
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
  const context = await browser.newContext({ viewport, locale: 'en-US' });
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

/**
 * The open conversation as [{text, seq, state}], in display order (sends
 * refused for good left out: they are only on the sender's page).
 */
function shown(page) {
  return page.$$eval('#message-list .message:not([data-state=failed])', (lis) =>
    lis.map((li) => ({ text: li.querySelector('.text').textContent, seq: Number(li.dataset.seq), state: li.dataset.state })),
  );
}

function waitUnread(page, id, n) {
  // Attached, not visible: at phone width the list hides behind the chat.
  return page.waitForSelector(`button[data-conversation="${id}"][data-unread="${n}"]`, { state: 'attached', timeout: WAIT_MS });
}

/** Waits until the open conversation shows the group event line `text`. */
function waitEvent(page, text) {
  return page
    .waitForFunction(
      (t) => [...document.querySelectorAll('#message-list li.event')].filter((li) => li.textContent === t).length === 1,
      text,
      { timeout: WAIT_MS, polling: 100 },
    )
    .catch(async (e) => {
      const lines = await page.$$eval('#message-list li.event', (lis) => lis.map((li) => li.textContent));
      throw new Error(`no event line ${JSON.stringify(text)}; the lines: ${JSON.stringify(lines)}\n${e.message}`);
    });
}

/** Opens the open group's member panel unless it is open. */
async function openGroupPanel(page) {
  if (await page.locator('[data-testid=group-panel]').isHidden()) await page.click('[data-testid=group-toggle]');
  await page.waitForSelector('[data-testid=group-members] li[data-user]', { timeout: WAIT_MS });
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
        const got = [...document.querySelectorAll('#message-list .message:not([data-state=failed])')].map(
          (li) => li.querySelector('.text').textContent,
        );
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
  // Edits and deletes take seqs of their own: increasing, not gapless.
  assert.ok(a.every((m, i) => m.seq > 0 && (i === 0 || m.seq > a[i - 1].seq)), `conversation seqs increase: ${JSON.stringify(a.map((m) => m.seq))}`);
  assert.deepEqual(a.map((m) => m.seq), b.map((m) => m.seq), 'both sides show the same seqs');
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

  step('bob reloads: the list and history come back from the server, each message once', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await bob.reload();
    await waitConnected(bob);
    // Read positions are the server's: nothing shows as unread.
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
    // The operator's creation of the group, from its history.
    await waitEvent(bob, 'An operator created the group with alice, you and carol');
    await openConversation(bob, DM);
    await screenshotAll('after-reload');
  });

  step('an operator broadcast shows on both pages', async () => {
    await stack.ctl(service, 'broadcast', 'Maintenance at 22:00 UTC');
    for (const name of ['alice', 'bob']) {
      await people[name].page.waitForSelector('#announcement:not([hidden]) >> text=Maintenance at 22:00 UTC', { timeout: WAIT_MS });
    }
  }, { critical: false });

  step('a second device of alice shows the server\'s list and unread counts; reading there clears them on the first', async () => {
    // 130 messages from carol: more than one page of history.
    for (let i = 1; i <= HISTORY_TOTAL; i++) {
      await stack.ctl(service, 'send', '--from', 'carol', '--to', 'alice', '--id', `history-${i}`, `History ${i}`);
    }
    // alice's open page gets them live.
    const { page: alice } = people.alice;
    await waitUnread(alice, CAROL, HISTORY_TOTAL);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 }, locale: 'en-US' });
    const page = await context.newPage();
    people.alice2 = { context, page, token: people.alice.token };
    await page.goto(`http://${gateway.address}/?token=${encodeURIComponent(people.alice.token)}&device=alice-second`);
    await waitConnected(page);
    // The same counts on a device that saw none of it arrive.
    await waitUnread(page, CAROL, HISTORY_TOTAL);
    await waitUnread(page, DM, 0);
    await waitUnread(page, TEAM, 0);
    // Ordered by last activity: carol's conversation is the most recent.
    const order = await page.$$eval('#conversations button[data-conversation]', (bs) => bs.map((b) => b.dataset.conversation));
    assert.equal(order[0], CAROL, `most recent first: ${JSON.stringify(order)}`);
    await screenshotAll('two-devices-unread');
    // Reading on the second device clears the first device's badge live.
    await openConversation(page, CAROL);
    await waitUnread(page, CAROL, 0);
    await waitUnread(alice, CAROL, 0);
    await screenshotAll('read-on-one-device-clears-the-other');
    // A new message counts on both, and bumps its conversation to the top.
    await stack.ctl(service, 'send', '--from', 'bob', '--group', 'team', '--id', 'bump-1', 'Team, bumped.');
    await waitUnread(page, TEAM, 1);
    await waitUnread(alice, TEAM, 1);
    await page.waitForFunction(
      (id) => document.querySelector('#conversations button[data-conversation]')?.dataset.conversation === id,
      TEAM,
      { timeout: WAIT_MS },
    );
    await openConversation(alice, TEAM);
    await waitUnread(page, TEAM, 0);
    await openConversation(alice, DM);
  }, { critical: false });

  step('scrolling up (Home key) loads a conversation\'s older history page by page', async () => {
    const page = people.alice2?.page;
    assert.ok(page, 'the second device is open');
    await openConversation(page, CAROL);
    await page.waitForSelector('#message-list .message', { timeout: WAIT_MS });
    const first = await shown(page);
    assert.ok(first.length < HISTORY_TOTAL, `the first page is not the whole history (${first.length} of ${HISTORY_TOTAL})`);
    assert.equal(first[first.length - 1].text, `History ${HISTORY_TOTAL}`);
    await page.focus('#messages');
    // One count per turn: a page still on its way when the loop checked
    // may land before Home is pressed, and then there is nothing to wait for.
    for (let before = (await shown(page)).length; before < HISTORY_TOTAL; before = (await shown(page)).length) {
      await page.keyboard.press('Home');
      await page.waitForFunction((n) => document.querySelectorAll('#message-list .message').length > n, before, { timeout: WAIT_MS });
    }
    const all = await shown(page);
    assert.deepEqual(all.map((m) => m.text), Array.from({ length: HISTORY_TOTAL }, (_, i) => `History ${i + 1}`));
    assert.deepEqual(all.map((m) => m.seq), Array.from({ length: HISTORY_TOTAL }, (_, i) => i + 1));
    await page.waitForSelector('#history-end:not([hidden])', { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(ARTIFACTS, `browser-${String(++shot).padStart(2, '0')}-history-alice-second-device.png`) });
    await people.alice2.context.close();
    delete people.alice2;
  }, { critical: false });

  step('alice edits her message: both sides show the new text, marked edited', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await openConversation(alice, DM);
    await openConversation(bob, DM);
    await send(alice, 'Alice, with a tpyo.');
    dmExpected.push('Alice, with a tpyo.');
    await waitMessage(bob, 'Alice, with a tpyo.', ['received']);
    const mine = alice.locator('#message-list .message.mine', { hasText: 'Alice, with a tpyo.' });
    await mine.hover();
    await mine.locator('button[data-action=edit]').click();
    await alice.waitForSelector('[data-testid=editing]:not([hidden])', { timeout: WAIT_MS });
    assert.equal(await alice.inputValue('[data-testid=composer]'), 'Alice, with a tpyo.');
    await alice.fill('[data-testid=composer]', 'Alice, with the typo fixed.');
    await alice.press('[data-testid=composer]', 'Enter');
    for (const page of [alice, bob]) {
      await page.waitForSelector('#message-list .message[data-edited=true] .text:text-is("Alice, with the typo fixed.")', { timeout: WAIT_MS });
      assert.match(await page.textContent('#message-list .message[data-edited=true] .meta'), /edited/);
    }
    // Only now: if the edit failed, later steps still know what is shown.
    dmExpected[dmExpected.length - 1] = 'Alice, with the typo fixed.';
    await assertDmOnBothSides(WAIT_MS);
    await screenshotAll('edited');
  }, { critical: false });

  step('alice deletes her message: both sides show a tombstone, and a reload does not bring the text back', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await send(alice, 'Alice, to be deleted.');
    dmExpected.push('Alice, to be deleted.');
    await waitMessage(bob, 'Alice, to be deleted.', ['received']);
    alice.once('dialog', (d) => d.accept());
    const mine = alice.locator('#message-list .message.mine', { hasText: 'Alice, to be deleted.' });
    await mine.hover();
    await mine.locator('button[data-action=delete]').click();
    for (const page of [alice, bob]) {
      await page.waitForSelector('#message-list .message[data-deleted=true] .text.tombstone:text-is("Message deleted")', { timeout: WAIT_MS });
    }
    dmExpected[dmExpected.length - 1] = 'Message deleted';
    assert.equal(await alice.locator('#message-list .message[data-deleted=true] button[data-action=edit]').isVisible(), false, 'a tombstone has no actions');
    await assertDmOnBothSides(WAIT_MS);
    await screenshotAll('deleted');
    await bob.reload();
    await waitConnected(bob);
    await openConversation(bob, DM);
    await assertDmOnBothSides(WAIT_MS);
    assert.ok(!(await bob.content()).includes('Alice, to be deleted.'), 'history serves the tombstone, not the text');
    assert.equal(await bob.locator('#message-list .message[data-edited=true] .text').textContent(), 'Alice, with the typo fixed.');
  }, { critical: false });

  step('bob blocks alice: her DM is refused and says so; unblocking lets it through', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await openConversation(bob, DM);
    await bob.click('[data-testid=block-toggle]');
    await bob.waitForSelector('[data-testid=block-toggle][aria-pressed=true]', { timeout: WAIT_MS });
    await bob.waitForSelector('[data-testid=chat-notice]:not([hidden])', { timeout: WAIT_MS });
    assert.match(await bob.textContent('[data-testid=chat-notice]'), /You blocked alice/);
    assert.equal(await bob.isDisabled('[data-testid=composer]'), true, 'no composing to a blocked user');
    await send(alice, 'Alice, while blocked.');
    await waitMessage(alice, 'Alice, while blocked.', ['failed']);
    assert.match(await alice.textContent('#message-list .message[data-state=failed] .meta'), /Not sent.*Blocked/);
    await alice.waitForSelector('[data-testid=chat-notice]:not([hidden])', { timeout: WAIT_MS });
    assert.match(await alice.textContent('[data-testid=chat-notice]'), /Not sent/);
    await screenshotAll('blocked');
    await bob.click('[data-testid=block-toggle]');
    await bob.waitForSelector('[data-testid=block-toggle][aria-pressed=false]', { timeout: WAIT_MS });
    await bob.waitForSelector('[data-testid=chat-notice]', { state: 'hidden', timeout: WAIT_MS });
    await send(alice, 'Alice, after the unblock.');
    dmExpected.push('Alice, after the unblock.');
    await waitMessage(bob, 'Alice, after the unblock.', ['received']);
    assert.equal(await bob.locator('#message-list .text:text-is("Alice, while blocked.")').count(), 0, 'the refused message was never delivered');
    await assertDmOnBothSides(WAIT_MS);
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

  step('messages of different days get day separators; one older than the edit window cannot be edited, and the page says why', async () => {
    const { page: alice } = people.alice;
    const link = service.linkAddress;
    await stack.ctl(service, 'users', 'create', 'dave');
    await stack.ctl(service, 'send', '--from', 'dave', '--to', 'alice', '--id', 'old-1', 'Dave, two days ago.');
    await stack.ctl(service, 'send', '--from', 'dave', '--to', 'alice', '--id', 'old-2', 'Dave, also two days ago.');
    await stack.ctl(service, 'send', '--from', 'alice', '--to', 'dave', '--id', 'old-3', 'Alice, two days ago.');
    await stack.ctl(service, 'send', '--from', 'dave', '--to', 'alice', '--id', 'new-1', 'Dave, today.');
    await service.stop('SIGTERM');
    // Two days: past the service's default edit window of 48 hours.
    await stack.backdate('d:alice:dave', [1, 2, 3], 2.1);
    service = await stack.startService({ linkAddress: link });
    // The page reconnects and lists its conversations again.
    await waitConnected(alice, RECOVER_MS);
    await waitUnread(alice, 'd:alice:dave', 3);
    await openConversation(alice, 'd:alice:dave');
    // As the page writes a day that is neither today nor yesterday (en-US).
    const day = new Date(Date.now() - 2.1 * 86400000);
    const twoDaysAgo = day.toLocaleDateString('en-US', {
      weekday: 'long',
      month: 'long',
      day: 'numeric',
      year: day.getFullYear() === new Date().getFullYear() ? undefined : 'numeric',
    });
    const want = [`day:${twoDaysAgo}`, 'Dave, two days ago.', 'Dave, also two days ago.', 'Alice, two days ago.', 'day:Today', 'Dave, today.'];
    // The messages arrived live (dated today) before they were dated back:
    // the history the page loads on opening the conversation has their dates.
    const rows = () =>
      alice.$$eval('#message-list > li', (lis) =>
        lis.map((li) => (li.classList.contains('day') ? `day:${li.textContent}` : li.querySelector('.text').textContent)),
      );
    await alice
      .waitForFunction(
        (w) =>
          JSON.stringify(
            [...document.querySelectorAll('#message-list > li')].map((li) =>
              li.classList.contains('day') ? `day:${li.textContent}` : li.querySelector('.text').textContent,
            ),
          ) === JSON.stringify(w),
        want,
        { timeout: WAIT_MS, polling: 100 },
      )
      .catch(async () => assert.deepEqual(await rows(), want));
    await screenshotAll('day-separators');
    const old = alice.locator('#message-list .message.mine', { hasText: 'Alice, two days ago.' });
    await old.hover();
    await old.locator('button[data-action=edit]').click();
    await alice.fill('[data-testid=composer]', 'Alice, too late to edit.');
    await alice.press('[data-testid=composer]', 'Enter');
    await alice.waitForSelector('.toast[role=alert]:text("Could not edit the message")', { timeout: WAIT_MS });
    assert.match(await alice.textContent('.toast'), /edit window/);
    assert.equal(await old.locator('.text').textContent(), 'Alice, two days ago.', 'the text is unchanged');
    assert.equal(await old.getAttribute('data-edited'), 'false');
    await screenshotAll('edit-window-passed');
  }, { critical: false });

  // The group alice creates from the page ("g:<id the service picked>").
  let trip = '';

  step('alice creates a group with bob from the page: both list it and see its creation', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await stack.ctl(service, 'users', 'create', 'erin');
    people.carol = { token: (await stack.ctl(service, 'token', 'carol', '--ttl', '1h')).trim() };
    const carol = await openPage('carol', { width: 1000, height: 700 });
    await alice.click('[data-testid=newgroup-toggle]');
    await alice.fill('[data-testid=newgroup-title]', 'Trip');
    await alice.fill('[data-testid=newgroup-members]', 'bob');
    await alice.click('[data-testid=newgroup-create]');
    await alice.waitForFunction(() => /^g:g/.test(document.querySelector('#chat').dataset.conversation || ''), null, { timeout: WAIT_MS });
    trip = await alice.getAttribute('#chat', 'data-conversation');
    await waitEvent(alice, 'You created the group “Trip” with bob');
    await alice.waitForSelector('[data-testid=chat-title]:text-is("Trip")', { timeout: WAIT_MS });
    await alice.waitForSelector('[data-testid=chat-subtitle]:text-is("2 members: alice (owner), bob")', { timeout: WAIT_MS });
    await bob.waitForSelector(`button[data-conversation="${trip}"] .title:text-is("Trip")`, { state: 'attached', timeout: WAIT_MS });
    await openConversation(bob, trip);
    await waitEvent(bob, 'alice created the group “Trip” with you');
    assert.equal(await carol.locator(`button[data-conversation="${trip}"]`).count(), 0, 'carol is not in it');
    await screenshotAll('group-created');
  });

  step('alice adds carol: carol\'s page lists the group and shows the event and the group\'s history', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    const { page: carol } = people.carol;
    await openGroupPanel(alice);
    // The owner may change roles and remove members.
    await alice.waitForSelector('[data-testid=group-members] li[data-user=bob] button[data-action=make-admin]', { timeout: WAIT_MS });
    await alice.fill('[data-testid=group-add-input]', 'carol');
    await alice.click('[data-testid=group-add]');
    await waitEvent(alice, 'You added carol');
    await alice.waitForSelector('[data-testid=group-members] li[data-user=carol]', { timeout: WAIT_MS });
    await waitEvent(bob, 'alice added carol');
    await carol.waitForSelector(`button[data-conversation="${trip}"] .title:text-is("Trip")`, { state: 'attached', timeout: WAIT_MS });
    await openConversation(carol, trip);
    await waitEvent(carol, 'alice added you');
    await waitEvent(carol, 'alice created the group “Trip” with bob');
    await screenshotAll('group-member-added');
  });

  step('bob, a plain member, is refused adding someone, and the page says why', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await openGroupPanel(bob);
    assert.equal(await bob.locator('[data-testid=group-rename-form]').isVisible(), false, 'no renaming for a plain member');
    assert.equal(await bob.locator('[data-testid=group-members] button').count(), 0, 'no member actions for a plain member');
    await bob.fill('[data-testid=group-add-input]', 'erin');
    await bob.click('[data-testid=group-add]');
    await bob.waitForSelector('[data-testid=group-error]:not([hidden])', { timeout: WAIT_MS });
    assert.match(await bob.textContent('[data-testid=group-error]'), /Could not add erin: Not allowed: .*owner and admins/);
    await screenshotAll('group-add-refused');
    // Nothing was stored: the next event everyone sees is alice's.
    assert.equal(await alice.locator('#message-list li.event', { hasText: 'erin' }).count(), 0);
  });

  step('alice renames the group and makes carol an admin: everyone sees it', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    const { page: carol } = people.carol;
    await alice.fill('[data-testid=group-rename-input]', 'Trip 2026');
    await alice.click('[data-testid=group-rename]');
    for (const [page, line] of [
      [alice, 'You renamed the group to “Trip 2026”'],
      [bob, 'alice renamed the group to “Trip 2026”'],
      [carol, 'alice renamed the group to “Trip 2026”'],
    ]) {
      await waitEvent(page, line);
      await page.waitForSelector('[data-testid=chat-title]:text-is("Trip 2026")', { timeout: WAIT_MS });
      await page.waitForSelector(`button[data-conversation="${trip}"] .title:text-is("Trip 2026")`, { state: 'attached', timeout: WAIT_MS });
    }
    await alice.click('[data-testid=group-members] li[data-user=carol] button[data-action=make-admin]');
    await waitEvent(carol, 'alice made you an admin');
    await waitEvent(bob, 'alice made carol an admin');
    await carol.waitForSelector('[data-testid=chat-subtitle]:text-is("3 members: alice (owner), carol (admin), bob")', { timeout: WAIT_MS });
    await openGroupPanel(carol);
    assert.equal(await carol.locator('[data-testid=group-rename-form]').isVisible(), true, 'an admin may rename');
    // The owner may not leave while others are in it: refused, and said why.
    alice.once('dialog', (d) => d.accept());
    await alice.click('[data-testid=group-leave]');
    await alice.waitForSelector('[data-testid=group-error]:not([hidden])', { timeout: WAIT_MS });
    assert.match(await alice.textContent('[data-testid=group-error]'), /Could not leave the group: Not possible now: .*make another member the owner/);
    assert.equal(await alice.isDisabled('[data-testid=composer]'), false, 'still in the group');
    await screenshotAll('group-renamed');
  });

  step('bob leaves: alice sees "bob left", bob\'s page marks the group as left', async () => {
    const { page: alice } = people.alice;
    const { page: bob } = people.bob;
    await openGroupPanel(bob);
    bob.once('dialog', (d) => d.accept());
    await bob.click('[data-testid=group-leave]');
    await waitEvent(alice, 'bob left');
    await waitEvent(bob, 'You left');
    await bob.waitForSelector('[data-testid=chat-notice]:text("You left this group")', { timeout: WAIT_MS });
    assert.equal(await bob.isDisabled('[data-testid=composer]'), true, 'no sending to a group one left');
    await bob.waitForSelector(`button[data-conversation="${trip}"][data-left=true]`, { state: 'attached', timeout: WAIT_MS });
    await alice.waitForSelector('[data-testid=chat-subtitle]:text-is("2 members: alice (owner), carol (admin)")', { timeout: WAIT_MS });
    await alice.waitForFunction(() => !document.querySelector('[data-testid=group-members] li[data-user=bob]'), null, { timeout: WAIT_MS });
    await screenshotAll('group-bob-left');
  });

  step('alice removes carol: carol sees the removal and the group marked as left', async () => {
    const { page: alice } = people.alice;
    const { page: carol } = people.carol;
    await openGroupPanel(alice);
    alice.once('dialog', (d) => d.accept());
    await alice.click('[data-testid=group-members] li[data-user=carol] button[data-action=remove]');
    await waitEvent(alice, 'You removed carol');
    await waitEvent(carol, 'alice removed you');
    await carol.waitForSelector('[data-testid=chat-notice]:text("alice removed you from this group")', { timeout: WAIT_MS });
    await carol.waitForSelector(`button[data-conversation="${trip}"][data-left=true]`, { state: 'attached', timeout: WAIT_MS });
    assert.equal(await carol.isDisabled('[data-testid=composer]'), true);
    await screenshotAll('group-carol-removed');
  });
});
