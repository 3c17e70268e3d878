#!/usr/bin/env node
// A real implementation of the app's drain endpoint (seed 001) on npm `bullmq`
// Workers, used by pytest as the app that queueops drains (bot/drain.py).
//
//   QUEUES=a,b node tests/interop/drain-endpoint.mjs
//
// Environment:
//   REDIS_URL            default redis://127.0.0.1:6379/9
//   REDIS_CLUSTER_NODES  "host:port,..." of a Redis Cluster, used instead of REDIS_URL
//   PREFIX               BullMQ key prefix, default "bull"
//   QUEUES               comma list of the queue names the endpoint may drain (required)
//   PORT                 default 0 (= a free port); HOST default 127.0.0.1
//   DRAIN_QUEUES_TOKEN, CRON_SECRET, CRON_TOKEN
//                        every non-empty one is an accepted token (rotation fallback chain)
//   TOKENS_FILE          optional path of {"accepted": ["tok1", ...]}, re-read on every
//                        request; while the file exists its list REPLACES the env tokens
//                        (a file that exists but cannot be parsed accepts nothing)
//   REDIS_WAIT_MS        how long a request waits for Redis before answering 500, default 1000
//
// stdout: first exactly one line {"listening": <port>}, then one JSON line per request:
//   {"method","path","queue","status","token","processed","failed"}
// where token is the first 4 characters of the token presented (or null) and
// processed/failed are the request's totals (0 unless it answered 200).
// Diagnostics go to stderr. SIGTERM/SIGINT: stop the running drains (their requests still
// get their 200 with what was done), close workers, queues, the server and Redis; exit 0.
//
// The contract: POST /api/v1/cron/drain-queues with `X-Cron-Secret: <token>` or
// `Authorization: Bearer <token>`; query queue, maxDurationMs (default 60000, capped at
// 600000), maxConcurrentQueues (default 2), maxJobsPerQueue (default unbounded).
// 200 {"ok": true, "durationMs", "totalProcessed", "totalFailed",
//      "queues": {"<name>": {"jobsProcessed", "jobsFailed", "idleAt"}}}
// 401 {"ok": false, "error": "unauthorized"}; 400 {"ok": false, "error": "unknown queue <name>"}
// (or a bad number); 404 any other path or method; 500 {"ok": false, "error":
// "REDIS_URL not configured"} when Redis cannot be reached.
//
// The jobs' processor: name "fail" throws Error("drain test failure"); data.sleepMs makes
// it sleep that long; otherwise it returns {ok: true}.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker } from 'bullmq';
import { connect, parseClusterNodes } from './redis-connection.mjs';

// Anything a library prints with console.log must not corrupt the JSON lines on stdout.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const DRAIN_PATH = '/api/v1/cron/drain-queues';
const DEFAULT_MAX_DURATION_MS = 60000;
const MAX_DURATION_MS = 600000;
const DEFAULT_MAX_CONCURRENT_QUEUES = 2;
// How often a running worker's queue is re-counted, in case the `drained` event does not
// come (it fires once per transition to "nothing to fetch").
const IDLE_POLL_MS = 200;
// Bound on single Redis round trips (probes), so a Redis that dies mid-request cannot
// hang it: ioredis with maxRetriesPerRequest null queues commands forever.
const REDIS_COMMAND_TIMEOUT_MS = 5000;
// After a stop, how long a worker may take to finish its in-flight job before force-close.
const CLOSE_GRACE_MS = 30000;

function fail(message) {
  process.stderr.write(`drain-endpoint: ${message}\n`);
  process.exit(2);
}

// --------------------------------------------------------------------------
// configuration
// --------------------------------------------------------------------------

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379/9';
const PREFIX = process.env.PREFIX || 'bull';
const HOST = process.env.HOST || '127.0.0.1';
const QUEUES = [
  ...new Set(
    (process.env.QUEUES || '')
      .split(',')
      .map(s => s.trim())
      .filter(Boolean),
  ),
];
if (QUEUES.length === 0) fail('QUEUES (comma list of queue names) is required');
const PORT = Number(process.env.PORT || 0);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`bad PORT ${process.env.PORT}`);
const REDIS_WAIT_MS = Number(process.env.REDIS_WAIT_MS || 1000);
const ENV_TOKENS = ['DRAIN_QUEUES_TOKEN', 'CRON_SECRET', 'CRON_TOKEN']
  .map(k => process.env[k])
  .filter(t => typeof t === 'string' && t !== '');
const TOKENS_FILE = process.env.TOKENS_FILE || '';

// --------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------

const reported = new Set();
/** Print each distinct error once (ioredis/BullMQ repeat them on every retry). */
function report(what, err) {
  const line = `${what}: ${err?.message ?? err}`;
  if (!reported.has(line)) {
    reported.add(line);
    process.stderr.write(`drain-endpoint: ${line}\n`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The tokens accepted right now: TOKENS_FILE's list while that file exists, else env. */
function acceptedTokens() {
  if (TOKENS_FILE) {
    let raw;
    try {
      raw = readFileSync(TOKENS_FILE, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return ENV_TOKENS;
      report('TOKENS_FILE unreadable, accepting no token', err);
      return [];
    }
    try {
      const parsed = JSON.parse(raw);
      if (!parsed || !Array.isArray(parsed.accepted)) {
        throw new Error('expected {"accepted": [...]}');
      }
      return parsed.accepted.filter(t => typeof t === 'string' && t !== '');
    } catch (err) {
      report('TOKENS_FILE invalid, accepting no token', err);
      return [];
    }
  }
  return ENV_TOKENS;
}

const digest = s => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time membership (compares fixed-size digests, so lengths do not leak). */
function isAccepted(presented, accepted) {
  const p = digest(presented);
  let ok = false;
  for (const tok of accepted) {
    if (timingSafeEqual(p, digest(tok))) ok = true;
  }
  return ok;
}

/** The token presented: X-Cron-Secret if given, else `Authorization: Bearer <token>`. */
function presentedToken(req) {
  const secret = req.headers['x-cron-secret'];
  if (typeof secret === 'string' && secret !== '') return secret;
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1].trim();
  }
  return null;
}

class BadRequest extends Error {}

function numberParam(params, key, { integer = false, min = 0, fallback }) {
  const raw = params.get(key);
  if (raw === null) return fallback;
  const value = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    const what = integer ? `an integer >= ${min}` : `a number >= ${min}`;
    throw new BadRequest(`${key} must be ${what}, got ${JSON.stringify(raw)}`);
  }
  return Math.floor(value);
}

// --------------------------------------------------------------------------
// Redis and BullMQ objects
// --------------------------------------------------------------------------

// REDIS_CLUSTER_NODES: the Redis Cluster instead (tests/interop/redis-connection.mjs).
const connection = connect(REDIS_URL, parseClusterNodes(process.env.REDIS_CLUSTER_NODES || ''));
connection.on('error', err => report('redis connection error', err));

const queues = new Map();
function queueFor(name) {
  let q = queues.get(name);
  if (!q) {
    q = new Queue(name, { connection, prefix: PREFIX });
    q.on('error', err => report(`queue ${name} error`, err));
    queues.set(name, q);
  }
  return q;
}

/** Resolve when the shared connection is usable, or throw after REDIS_WAIT_MS. */
async function redisReady() {
  if (connection.status !== 'ready') {
    await withTimeout(
      new Promise(resolve => {
        const onReady = () => {
          connection.off('ready', onReady);
          resolve();
        };
        connection.on('ready', onReady);
      }),
      REDIS_WAIT_MS,
      'redis not ready',
    );
  }
  await withTimeout(connection.ping(), REDIS_WAIT_MS, 'redis ping');
}

async function runnable(queue) {
  const c = await withTimeout(
    queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused'),
    REDIS_COMMAND_TIMEOUT_MS,
    `getJobCounts ${queue.name}`,
  );
  return (c.waiting || 0) + (c.prioritized || 0);
}

async function processor(job) {
  if (job.name === 'fail') throw new Error('drain test failure');
  const ms = Number(job.data?.sleepMs);
  if (Number.isFinite(ms) && ms > 0) await sleep(ms);
  return { ok: true };
}

// --------------------------------------------------------------------------
// draining
// --------------------------------------------------------------------------

/** Every drain in progress, so SIGTERM can stop them. */
const running = new Set();

/**
 * Drain one queue: probe, then (if it has waiting/prioritized jobs) run a Worker with
 * concurrency 1 until the queue is idle, maxJobs jobs were taken, the deadline, or shutdown.
 */
async function drainQueue(name, { t0, deadline, maxJobs }) {
  const result = { jobsProcessed: 0, jobsFailed: 0, idleAt: 0 };
  const queue = queueFor(name);
  if ((await runnable(queue)) === 0) return result;
  if (Date.now() >= deadline || shuttingDown) {
    result.idleAt = Date.now() - t0;
    return result;
  }

  let taken = 0;
  let busy = false;
  let idleAt = null;
  let stopping = null;
  let worker;

  const stop = () => {
    if (!stopping) {
      stopping = withTimeout(worker.close(), CLOSE_GRACE_MS, `closing worker ${name}`).catch(
        err => {
          report(`worker ${name}`, err);
          return worker.close(true);
        },
      );
    }
    return stopping;
  };
  const markIdle = () => {
    if (idleAt === null && !stopping) {
      idleAt = Date.now() - t0;
      stop();
    }
  };
  /** Idle: nothing in flight here and nothing left that a worker could take. */
  const checkIdle = async () => {
    if (stopping || busy) return;
    try {
      const n = await runnable(queue);
      if (n === 0 && !busy) markIdle();
      // A paused queue keeps its prioritized jobs but gives none to a worker.
      else if (!busy && (await queue.isPaused())) markIdle();
    } catch (err) {
      report(`counting ${name}`, err);
    }
  };

  worker = new Worker(
    name,
    async job => {
      busy = true;
      taken += 1;
      if (maxJobs !== undefined && taken >= maxJobs) {
        // Close before this job finishes: with `closing` set, the worker moves this job
        // to completed/failed WITHOUT fetching the next one in the same script, so no job
        // beyond maxJobs is taken. close() waits for this job (started, not awaited).
        stop();
      }
      return processor(job);
    },
    { connection, prefix: PREFIX, concurrency: 1, autorun: false },
  );
  worker.on('error', err => report(`worker ${name} error`, err));
  worker.on('completed', () => {
    result.jobsProcessed += 1;
    busy = false;
  });
  worker.on('failed', () => {
    result.jobsFailed += 1;
    busy = false;
  });
  // 'drained' comes after the last job's 'completed'/'failed', when the worker found
  // nothing more to fetch; confirm with the counts (a job may have arrived since).
  worker.on('drained', () => {
    checkIdle();
  });

  const handle = { stop };
  running.add(handle);
  const poll = setInterval(checkIdle, IDLE_POLL_MS);
  const timer = setTimeout(stop, Math.max(0, deadline - Date.now()));
  const runDone = worker.run().catch(err => report(`worker ${name} run`, err));
  try {
    // The worker's main loop ends only once the worker is closing (stop() was called).
    await runDone;
    await stop();
  } finally {
    clearInterval(poll);
    clearTimeout(timer);
    running.delete(handle);
  }
  result.idleAt = idleAt ?? Date.now() - t0;
  return result;
}

async function drain(targets, { maxDurationMs, maxConcurrentQueues, maxJobs }) {
  const t0 = Date.now();
  const deadline = t0 + maxDurationMs;
  const out = {};
  const pending = [...targets];
  const lanes = Array.from({ length: Math.min(maxConcurrentQueues, pending.length) }, async () => {
    while (pending.length > 0) {
      const name = pending.shift();
      out[name] = await drainQueue(name, { t0, deadline, maxJobs });
    }
  });
  await Promise.all(lanes);
  const queuesOut = {};
  let totalProcessed = 0;
  let totalFailed = 0;
  for (const name of targets) {
    queuesOut[name] = out[name];
    totalProcessed += out[name].jobsProcessed;
    totalFailed += out[name].jobsFailed;
  }
  return {
    ok: true,
    durationMs: Date.now() - t0,
    totalProcessed,
    totalFailed,
    queues: queuesOut,
  };
}

// --------------------------------------------------------------------------
// HTTP
// --------------------------------------------------------------------------

async function handle(req, url) {
  const queueParam = url.searchParams.get('queue');
  const entry = {
    method: req.method,
    path: url.pathname,
    queue: queueParam,
    status: 404,
    token: null,
    processed: 0,
    failed: 0,
  };
  const answer = (status, body) => {
    entry.status = status;
    return { status, body, entry };
  };
  if (url.pathname !== DRAIN_PATH || req.method !== 'POST') {
    return answer(404, { ok: false, error: 'not found' });
  }
  const token = presentedToken(req);
  entry.token = token === null ? null : token.slice(0, 4);
  if (token === null || !isAccepted(token, acceptedTokens())) {
    return answer(401, { ok: false, error: 'unauthorized' });
  }
  let opts;
  try {
    if (queueParam !== null && !QUEUES.includes(queueParam)) {
      throw new BadRequest(`unknown queue ${queueParam}`);
    }
    opts = {
      maxDurationMs: Math.min(
        numberParam(url.searchParams, 'maxDurationMs', { fallback: DEFAULT_MAX_DURATION_MS }),
        MAX_DURATION_MS,
      ),
      maxConcurrentQueues: numberParam(url.searchParams, 'maxConcurrentQueues', {
        integer: true,
        min: 1,
        fallback: DEFAULT_MAX_CONCURRENT_QUEUES,
      }),
      maxJobs: numberParam(url.searchParams, 'maxJobsPerQueue', {
        integer: true,
        min: 1,
        fallback: undefined,
      }),
    };
  } catch (err) {
    if (err instanceof BadRequest) return answer(400, { ok: false, error: err.message });
    throw err;
  }
  if (shuttingDown) return answer(503, { ok: false, error: 'shutting down' });
  try {
    await redisReady();
  } catch (err) {
    report('redis unreachable', err);
    return answer(500, { ok: false, error: 'REDIS_URL not configured' });
  }
  let body;
  try {
    body = await drain(queueParam === null ? QUEUES : [queueParam], opts);
  } catch (err) {
    report('drain failed', err);
    return answer(500, { ok: false, error: `drain failed: ${err?.message ?? err}` });
  }
  entry.processed = body.totalProcessed;
  entry.failed = body.totalFailed;
  return answer(200, body);
}

let shuttingDown = false;
const inFlight = new Set();

const server = createServer((req, res) => {
  req.resume(); // the body is not used
  const url = new URL(req.url, 'http://localhost');
  const work = handle(req, url)
    .catch(err => {
      report('request failed', err);
      return {
        status: 500,
        body: { ok: false, error: String(err?.message ?? err) },
        entry: {
          method: req.method,
          path: url.pathname,
          queue: url.searchParams.get('queue'),
          status: 500,
          token: null,
          processed: 0,
          failed: 0,
        },
      };
    })
    .then(({ status, body, entry }) => {
      const payload = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
      });
      res.end(payload);
      process.stdout.write(`${JSON.stringify(entry)}\n`);
    });
  inFlight.add(work);
  work.finally(() => inFlight.delete(work));
});
server.on('error', err => fail(`server: ${err.message}`));

async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  const watchdog = setTimeout(() => {
    process.stderr.write(`drain-endpoint: ${signal}: shutdown did not finish, forcing exit\n`);
    process.exit(1);
  }, CLOSE_GRACE_MS + 5000);
  watchdog.unref();
  const closed = new Promise(resolve => server.close(resolve));
  for (const h of running) h.stop();
  await Promise.allSettled([...inFlight]);
  server.closeIdleConnections();
  setTimeout(() => server.closeAllConnections(), 500).unref();
  await closed;
  for (const q of queues.values()) {
    try {
      await withTimeout(q.close(), 2000, `closing queue ${q.name}`);
    } catch (err) {
      report('closing queue', err);
    }
  }
  if (connection.status === 'ready') {
    try {
      await withTimeout(connection.quit(), 2000, 'redis quit');
    } catch {
      connection.disconnect();
    }
  } else {
    connection.disconnect();
  }
  process.exitCode = 0;
  // Everything is closed; if a handle still lingers, exit anyway rather than hang pytest.
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.listen(PORT, HOST, () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
