// The real Parley binaries on loopback, for the browser test.
//
//   const stack = new Stack({ binDir, artifacts });
//   const svc = await stack.startService();            // ports 0
//   const gw = await stack.startGateway(svc.linkAddress, { webRoot });
//   await stack.ctl(svc, 'users', 'create', 'alice');
//   const token = (await stack.ctl(svc, 'token', 'alice', '--ttl', '1h')).trim();
//   await stack.stopAll();
//
// Every process is started with its own log file under `artifacts`, its
// readiness is awaited from its `event=*.ready` log line (never a sleep), and
// it is stopped by PID. Restarts reuse the previous addresses and data dir.

import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/**
 * Splits a Parley log line (`TS level=info event=x k=v k2="a b"`) into its
 * fields.
 * @param {string} line
 * @returns {Record<string, string>}
 */
export function parseLogLine(line) {
  const fields = {};
  for (const m of line.matchAll(/([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    let v = m[2];
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v);
      } catch {
        v = v.slice(1, -1);
      }
    }
    fields[m[1]] = v;
  }
  return fields;
}

/** A child process whose stderr (Parley's log) is watched line by line. */
export class Proc {
  /**
   * @param {string} name Used for the log file name.
   * @param {string} file The executable.
   * @param {string[]} args
   * @param {string} logDir
   */
  constructor(name, file, args, logDir) {
    this.name = name;
    this.file = file;
    this.args = args;
    this.lines = [];
    this.waiters = new Set();
    this.exited = null;
    this.logPath = path.join(logDir, `browser-${name}.log`);
    this.log = createWriteStream(this.logPath, { flags: 'a' });
    this.log.write(`# ${file} ${args.join(' ')}\n`);
    this.child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    this.child.stdout.on('data', (d) => this.log.write(d));
    createInterface({ input: this.child.stderr }).on('line', (line) => {
      this.log.write(`${line}\n`);
      this.lines.push(line);
      for (const w of [...this.waiters]) w.check();
    });
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = { code, signal };
        this.log.write(`# exited code=${code} signal=${signal}\n`);
        for (const w of [...this.waiters]) w.check();
        resolve(this.exited);
      });
      this.child.on('error', (err) => {
        this.exited = { code: null, signal: null, error: err };
        for (const w of [...this.waiters]) w.check();
        resolve(this.exited);
      });
    });
  }

  /**
   * Resolves with the fields of the first log line (from line index `from`)
   * whose event is `event`; rejects if the process exits first or the
   * time runs out.
   * @param {string} event
   * @param {{from?: number, timeoutMs?: number}} [options]
   * @returns {Promise<Record<string, string>>}
   */
  waitForEvent(event, { from = 0, timeoutMs = 30000 } = {}) {
    return new Promise((resolve, reject) => {
      let seen = from;
      const waiter = {
        check: () => {
          while (seen < this.lines.length) {
            const fields = parseLogLine(this.lines[seen++]);
            if (fields.event === event) {
              done();
              resolve(fields);
              return;
            }
          }
          if (this.exited) {
            done();
            reject(new Error(`${this.name} exited (${JSON.stringify(this.exited)}) before logging event=${event}; log ${this.logPath}:\n${this.tail()}`));
          }
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} did not log event=${event} within ${timeoutMs} ms; log ${this.logPath}:\n${this.tail()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  /** @returns {string} The last lines of the log. */
  tail(n = 25) {
    return this.lines.slice(-n).join('\n');
  }

  /**
   * Signals the process and waits for it to exit (SIGKILL after
   * `graceMs`).
   * @param {NodeJS.Signals} [signal]
   * @param {number} [graceMs]
   */
  async stop(signal = 'SIGTERM', graceMs = 15000) {
    if (!this.exited) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        if (!this.exited) {
          try {
            process.kill(this.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }, graceMs);
      await this.exitPromise;
      clearTimeout(timer);
    }
    await new Promise((r) => this.log.end(r));
    return this.exited;
  }
}

/** Starts and stops parley-service, parley-gateway and parleyctl. */
export class Stack {
  /**
   * @param {{binDir: string, artifacts: string, webRoot: string}} options
   */
  constructor({ binDir, artifacts, webRoot }) {
    this.binDir = binDir;
    this.artifacts = artifacts;
    this.webRoot = webRoot;
    this.procs = [];
    this.tokenSecret = 'browser-test-token-secret';
    this.adminKey = 'browser-test-admin-key';
    mkdirSync(artifacts, { recursive: true });
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'parley-browser-data-'));
    this.starts = { service: 0, gateway: 0 };
  }

  /** Path of a binary under binDir. @param {string} rel */
  bin(rel) {
    return path.join(this.binDir, rel);
  }

  /** @returns {string[]} The binaries that are missing or not executable. */
  missingBinaries() {
    const missing = [];
    for (const rel of ['service/parley-service', 'gateway/parley-gateway', 'tools/parleyctl']) {
      try {
        accessSync(this.bin(rel), constants.X_OK);
      } catch {
        missing.push(this.bin(rel));
      }
    }
    return missing;
  }

  /**
   * Starts parley-service and waits for service.ready.
   * @param {{linkAddress?: string}} [options] The previous link address on a
   *     restart, so the gateway finds the service where it was.
   */
  async startService({ linkAddress = '127.0.0.1:0' } = {}) {
    const n = ++this.starts.service;
    const proc = new Proc(`service-${n}`, this.bin('service/parley-service'), [
      `--link_address=${linkAddress}`,
      '--admin_address=127.0.0.1:0',
      '--metrics_address=127.0.0.1:0',
      `--data_dir=${this.dataDir}`,
      `--token_secret=${this.tokenSecret}`,
      `--admin_key=${this.adminKey}`,
    ], this.artifacts);
    this.procs.push(proc);
    const ready = await proc.waitForEvent('service.ready');
    proc.linkAddress = ready.link_address;
    proc.adminAddress = ready.admin_address;
    return proc;
  }

  /**
   * Starts parley-gateway and waits for gateway.ready.
   * @param {string} serviceAddress The service's link address.
   * @param {{listenAddress?: string}} [options] The previous address on a
   *     restart, so the pages find the gateway where it was.
   */
  async startGateway(serviceAddress, { listenAddress = '127.0.0.1:0' } = {}) {
    const n = ++this.starts.gateway;
    const proc = new Proc(`gateway-${n}`, this.bin('gateway/parley-gateway'), [
      `--listen_address=${listenAddress}`,
      `--service_address=${serviceAddress}`,
      `--web_root=${this.webRoot}`,
      '--metrics_address=127.0.0.1:0',
    ], this.artifacts);
    this.procs.push(proc);
    const ready = await proc.waitForEvent('gateway.ready');
    proc.address = ready.address;
    return proc;
  }

  /**
   * Runs parleyctl against a service; resolves with its stdout.
   * @param {Proc} service
   * @param {...string} args
   * @returns {Promise<string>}
   */
  ctl(service, ...args) {
    const argv = [`--admin_addr=${service.adminAddress}`, `--admin_key=${this.adminKey}`, ...args];
    return new Promise((resolve, reject) => {
      execFile(this.bin('tools/parleyctl'), argv, { timeout: 30000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`parleyctl ${args.join(' ')} failed (${err.code}): ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }

  /**
   * Dates messages of a conversation back in the SQLite store of a stopped
   * service: the protocol and the admin API have no way to store a message
   * with a past time, and a page's day separators need messages of other
   * days. Changes only the messages' send time (sent_us).
   * @param {string} conversation
   * @param {number[]} seqs
   * @param {number} days
   * @returns {Promise<void>}
   */
  backdate(conversation, seqs, days) {
    const db = path.join(this.dataDir, 'parley.db');
    const script = [
      'import sqlite3, sys',
      'db = sqlite3.connect(sys.argv[1])',
      'seqs = [int(s) for s in sys.argv[3].split(",")]',
      'n = db.execute("UPDATE messages SET sent_us = sent_us - ? WHERE conversation = ? AND seq IN (%s)" % ",".join("?" * len(seqs)),',
      '               [int(float(sys.argv[4]) * 86400e6), sys.argv[2], *seqs]).rowcount',
      'db.commit()',
      'sys.exit(0 if n == len(seqs) else f"dated {n} of {len(seqs)} messages back")',
    ].join('\n');
    const args = ['-c', script, db, conversation, seqs.join(','), String(days)];
    return new Promise((resolve, reject) => {
      execFile('/usr/bin/python3', args, { timeout: 30000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`backdating ${conversation} ${seqs} in ${db} failed: ${stderr || err.message}`));
        else resolve();
      });
    });
  }

  /**
   * SIGKILLs every process still running, by PID, synchronously: for when
   * the test itself is being killed and cannot wait.
   */
  killNow() {
    for (const p of this.procs) {
      if (!p.exited) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  }

  /** Stops every process still running, newest first, by PID; removes the data. */
  async stopAll() {
    for (const p of [...this.procs].reverse()) await p.stop('SIGTERM');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
