#!/usr/bin/env node
// A small CLI around the real npm `bullmq` package, used by the Python interop
// tests (tests/node_bullmq.py) to check queueops against the reference
// implementation: Node writes state that queueops must read, and Node reads
// state that queueops wrote.
//
//   node tests/interop/bullmq-cli.mjs <command> '<json args>'
//
// Redis is taken from env REDIS_URL (default redis://127.0.0.1:6379/9), or,
// when env REDIS_CLUSTER_NODES ("host:port,host:port,...") is set, is the Redis
// Cluster those nodes belong to (REDIS_URL is then ignored). On a cluster every
// command works as long as each queue's keys share one slot: BullMQ keys are
// `<prefix>:<queue>:<suffix>`, so hash-tag the prefix (`{bull}`) or the queue
// name (`{orders}`; `{orders}-children` then hashes to the same slot).
// Every command prints exactly one JSON document on stdout and exits 0; on
// error the message goes to stderr and the exit code is 1. All queues, workers,
// flow producers and the Redis connection are closed before exiting.
//
// Commands (every args object carries "prefix", the BullMQ key prefix):
//   populate  {"prefix","queue"}                    jobs in every state -> {"ids": {...}, "children": {...}}
//   counts    {"prefix","queues":[...]}             {"<queue>": getJobCounts(), ...}
//   job       {"prefix","queue","id"}               null | {id,name,data,opts,...,state,logs}
//   add       {"prefix","queue","jobs":[{name,data,opts}]}  {"ids": [...]}
//   process   {"prefix","queue","count","timeoutMs"}        {"processed": [{id,name,data,attemptsMade}]}
//   pause     {"prefix","queue"}                    {"paused": bool}
//   resume    {"prefix","queue"}                    {"paused": bool}
//   is-paused {"prefix","queue"}                    {"paused": bool}
//   log       {"prefix","queue","id","line"}        {"ok": true}
//   attempts  {"prefix","queue","attempts","logLines","data"}  {"id"}: failing every attempt, logs
//   flow      {"prefix","queue"}                    {"parent","children"}: a FlowProducer parent

import { randomUUID } from 'node:crypto';
import { FlowProducer, Job, Queue, Worker } from 'bullmq';
import { UsageError, connect, parseClusterNodes } from './redis-connection.mjs';

// Anything a library prints with console.log must not corrupt the single JSON
// document on stdout.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379/9';
const REDIS_CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES || '';
// Hard cap for one invocation, so an unreachable Redis (ioredis retries forever
// with maxRetriesPerRequest: null) cannot hang the test suite.
const COMMAND_TIMEOUT_MS = Number(process.env.BULLMQ_CLI_TIMEOUT_MS || 30000);

const HOUR_MS = 60 * 60 * 1000;

/** The Redis URL without its password, for error messages. */
function redact(url) {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable REDIS_URL>';
  }
}

/** Owns the one Redis connection and every BullMQ object created on it. */
class Resources {
  constructor(url, clusterNodes = []) {
    this.url = url;
    this.clusterNodes = clusterNodes;
    this.connection = connect(url, clusterNodes);
    this.reported = new Set();
    this.connection.on('error', err => this.report('redis connection error', err));
    this.connection.on('node error', (err, node) =>
      this.report(`redis cluster node ${node} error`, err),
    );
    this.closables = [];
  }

  /** Where we connect, for error messages (a URL without its password). */
  where() {
    if (this.clusterNodes.length === 0) return redact(this.url);
    return `cluster ${this.clusterNodes.map(n => `${n.host}:${n.port}`).join(',')}`;
  }

  /** Print each distinct error once (ioredis/BullMQ repeat them on every retry). */
  report(what, err) {
    const line = `${what}: ${err?.message ?? err}`;
    if (!this.reported.has(line)) {
      this.reported.add(line);
      process.stderr.write(`${line}\n`);
    }
  }

  /**
   * Wait for the connection to be ready, failing fast on the first connection
   * error: with maxRetriesPerRequest null, ioredis would otherwise queue every
   * command and retry forever against an unreachable Redis.
   */
  async connect() {
    const conn = this.connection;
    if (conn.status === 'ready') return;
    await new Promise((resolve, reject) => {
      const done = err => {
        conn.off('ready', onReady);
        conn.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      // A Cluster's "Failed to refresh slots cache." carries the real cause.
      const onError = err => {
        const cause = err.lastNodeError ? ` (${err.lastNodeError.message})` : '';
        done(new Error(`cannot connect to Redis at ${this.where()}: ${err.message}${cause}`));
      };
      conn.on('ready', onReady);
      conn.on('error', onError);
    });
  }

  /** Register a Queue/Worker/FlowProducer so it is closed at the end. */
  track(obj) {
    obj.on?.('error', err => this.report('bullmq error', err));
    this.closables.push(obj);
    return obj;
  }

  queue(name, prefix) {
    return this.track(new Queue(name, { connection: this.connection, prefix }));
  }

  async closeAll() {
    const errors = [];
    // Reverse order: workers before the queues they were created after.
    for (const obj of this.closables.reverse()) {
      try {
        // Worker.close(true) does not wait for in-flight jobs; by the time we
        // get here every worker has already been shut down deliberately, so
        // force is only a guard against hanging on an unexpected job.
        await (obj instanceof Worker ? obj.close(true) : obj.close());
      } catch (err) {
        errors.push(err);
      }
    }
    this.closables = [];
    // The connection is shared (passed as an instance), so BullMQ never
    // closes it; we do.
    if (this.connection.status === 'ready') {
      try {
        await this.connection.quit();
      } catch {
        this.connection.disconnect();
      }
    } else {
      this.connection.disconnect();
    }
    return errors;
  }
}

function requireString(args, key) {
  const value = args[key];
  if (typeof value !== 'string' || value === '') {
    throw new UsageError(`args.${key} must be a non-empty string`);
  }
  return value;
}

function requireId(args) {
  const value = args.id;
  if ((typeof value !== 'string' || value === '') && typeof value !== 'number') {
    throw new UsageError('args.id must be a job id (string or number)');
  }
  return String(value);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolve once `count` matching worker events have fired. */
function waitForEvents(worker, events, count, ms) {
  return withTimeout(
    new Promise(resolve => {
      let seen = 0;
      const onEvent = () => {
        seen += 1;
        if (seen >= count) {
          for (const e of events) worker.off(e, onEvent);
          resolve();
        }
      };
      for (const e of events) worker.on(e, onEvent);
    }),
    ms,
    `waiting for ${count} ${events.join('/')} events`,
  );
}

// --------------------------------------------------------------------------
// populate
// --------------------------------------------------------------------------

const EXPECTED_POPULATE_COUNTS = {
  active: 1,
  completed: 1,
  delayed: 1,
  failed: 2,
  paused: 0,
  prioritized: 1,
  waiting: 3,
  'waiting-children': 1,
};

async function populate(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const childQueue = `${name}-children`;
  const queue = res.queue(name, prefix);
  const { connection } = res;

  const existing = await queue.getJobCounts();
  if (Object.values(existing).some(n => n > 0)) {
    throw new Error(`queue ${prefix}:${name} is not empty: ${JSON.stringify(existing)}`);
  }

  // Step 1: the jobs that a running worker must finish. They are the only jobs
  // in the queue while the worker runs, so it cannot take anything else.
  const failedJobs = await queue.addBulk([
    {
      name: 'charge-card',
      data: { n: 1, customer: { id: 'cus_1', tags: ['vip', 'eu'] }, amount: { value: 1999, currency: 'EUR' } },
      opts: { attempts: 1 },
    },
    {
      name: 'charge-card',
      data: { n: 2, customer: { id: 'cus_2', tags: [] }, amount: { value: 0, currency: 'USD' } },
      opts: { attempts: 1 },
    },
  ]);
  const completedJob = await queue.add(
    'generate-report',
    { n: 3, report: { kind: 'daily', sections: ['sales', 'refunds'] } },
    { attempts: 1 },
  );

  const worker = res.track(
    new Worker(
      name,
      async job => {
        if (job.name === 'charge-card') {
          throw new Error(`boom: poison payload ${job.data.n}`);
        }
        return { ok: true, rows: [1, 2, 3] };
      },
      { connection, prefix, concurrency: 1, autorun: false },
    ),
  );
  // Listen before starting, then wait for the 3 outcomes. 'failed' and
  // 'completed' are emitted after the job was moved in Redis.
  const finished = waitForEvents(worker, ['failed', 'completed'], 3, 10000);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await finished;
  await worker.close();

  // Step 2: one job held in `active` by a worker that then goes away without
  // finishing it (as if its process had died): the lock key stays, with the
  // worker's token and a 10 minute TTL.
  const activeAdded = await queue.add(
    'sync-inventory',
    { n: 4, warehouse: { id: 'wh-7', bins: [{ sku: 'A1', qty: 3 }] } },
  );
  const holder = res.track(
    new Worker(name, null, { connection, prefix, autorun: false, lockDuration: 600000 }),
  );
  const token = randomUUID();
  const activeJob = await holder.getNextJob(token, { block: false });
  if (!activeJob || activeJob.id !== activeAdded.id) {
    throw new Error(`expected getNextJob to take job ${activeAdded.id}, got ${activeJob?.id}`);
  }
  // force=true: do not wait for the (never finishing) job; it stays active.
  await holder.close(true);
  const lockKey = `${prefix}:${name}:${activeJob.id}:lock`;
  const [lockValue, lockTtl] = await Promise.all([connection.get(lockKey), connection.pttl(lockKey)]);
  if (lockValue !== token || !(lockTtl > 0)) {
    throw new Error(`lock ${lockKey} not in place (value=${lockValue}, pttl=${lockTtl})`);
  }

  // Step 3: jobs nobody will take (no worker runs from here on).
  const waitingJobs = await queue.addBulk([
    {
      name: 'send-email',
      data: { n: 1, nested: { k: [1, 2] }, to: { address: 'a@example.com', cc: [] } },
    },
    {
      name: 'send-email',
      data: { n: 2, nested: { k: [3, 4] }, to: { address: 'b@example.com', cc: ['c@example.com'] } },
    },
    {
      name: 'resize-image',
      data: { n: 3, nested: { k: [5] }, image: { url: 's3://bucket/cat.png', sizes: [64, 128] } },
    },
  ]);
  const delayedJob = await queue.add(
    'send-reminder',
    { n: 5, nested: { k: [6] }, remind: { at: 'later', channels: ['email'] } },
    { delay: HOUR_MS },
  );
  const prioritizedJob = await queue.add(
    'resize-image',
    { n: 6, nested: { k: [7] }, image: { url: 's3://bucket/dog.png', sizes: [256] } },
    { priority: 5 },
  );

  // Step 4: a parent in this queue waiting for a child in `<queue>-children`.
  const flow = res.track(new FlowProducer({ connection, prefix }));
  const tree = await flow.add({
    name: 'assemble-report',
    queueName: name,
    data: { n: 7, nested: { k: [8] }, report: { parts: 1 } },
    children: [
      {
        name: 'fetch-section',
        queueName: childQueue,
        data: { n: 8, nested: { k: [9] }, section: { name: 'sales' } },
      },
    ],
  });

  const counts = await queue.getJobCounts();
  for (const [state, expected] of Object.entries(EXPECTED_POPULATE_COUNTS)) {
    if (counts[state] !== expected) {
      throw new Error(`populate ended with unexpected counts ${JSON.stringify(counts)}`);
    }
  }

  return {
    ids: {
      waiting: waitingJobs.map(j => j.id),
      delayed: [delayedJob.id],
      prioritized: [prioritizedJob.id],
      failed: failedJobs.map(j => j.id),
      completed: [completedJob.id],
      active: [activeJob.id],
      'waiting-children': [tree.job.id],
    },
    // Not one of the 8 states of <queue>: the flow child, waiting in its own queue.
    children: { [childQueue]: { waiting: tree.children.map(c => c.job.id) } },
  };
}

// --------------------------------------------------------------------------
// the other commands
// --------------------------------------------------------------------------

async function counts(res, args) {
  const prefix = requireString(args, 'prefix');
  if (!Array.isArray(args.queues) || args.queues.some(q => typeof q !== 'string' || q === '')) {
    throw new UsageError('args.queues must be a list of queue names');
  }
  const out = {};
  for (const name of args.queues) {
    out[name] = await res.queue(name, prefix).getJobCounts();
  }
  return out;
}

async function job(res, args) {
  const prefix = requireString(args, 'prefix');
  const queue = res.queue(requireString(args, 'queue'), prefix);
  const id = requireId(args);
  const found = await Job.fromId(queue, id);
  if (!found) {
    return null;
  }
  const [state, { logs }] = await Promise.all([found.getState(), queue.getJobLogs(id)]);
  return {
    id: found.id,
    name: found.name,
    data: found.data,
    opts: found.opts,
    attemptsMade: found.attemptsMade,
    failedReason: found.failedReason ?? null,
    stacktrace: found.stacktrace ?? [],
    timestamp: found.timestamp,
    processedOn: found.processedOn ?? null,
    finishedOn: found.finishedOn ?? null,
    state,
    logs,
    // Extras, handy for assertions; not part of the original brief.
    returnvalue: found.returnvalue ?? null,
    attemptsStarted: found.attemptsStarted ?? 0,
    parentKey: found.parentKey ?? null,
  };
}

async function add(res, args) {
  const prefix = requireString(args, 'prefix');
  const queue = res.queue(requireString(args, 'queue'), prefix);
  if (!Array.isArray(args.jobs)) {
    throw new UsageError('args.jobs must be a list of {name, data, opts}');
  }
  const jobs = await queue.addBulk(
    args.jobs.map((j, i) => {
      if (!j || typeof j.name !== 'string') {
        throw new UsageError(`args.jobs[${i}].name must be a string`);
      }
      return { name: j.name, data: j.data ?? {}, opts: j.opts ?? {} };
    }),
  );
  return { ids: jobs.map(j => j.id) };
}

async function processJobs(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const count = args.count ?? 1;
  const timeoutMs = args.timeoutMs ?? 10000;
  if (!Number.isInteger(count) || count < 1) {
    throw new UsageError('args.count must be a positive integer');
  }
  if (typeof timeoutMs !== 'number' || timeoutMs <= 0) {
    throw new UsageError('args.timeoutMs must be a positive number');
  }

  const processed = [];
  let completed = 0;
  let resolveDone;
  const done = new Promise(resolve => {
    resolveDone = resolve;
  });

  const worker = res.track(
    new Worker(
      name,
      async job => {
        processed.push({
          id: job.id,
          name: job.name,
          data: job.data,
          // As seen by the processor, i.e. before this attempt is counted.
          attemptsMade: job.attemptsMade,
        });
        if (processed.length >= count) {
          // Stop before this job is finished: with `closing` set, the worker
          // moves this job to completed WITHOUT fetching the next one in the
          // same script, so no job beyond `count` is taken. close() waits for
          // this job to finish (we only start it, not await it here).
          worker.close().catch(() => {});
        }
        return { ok: true };
      },
      { connection: res.connection, prefix, concurrency: 1, autorun: false },
    ),
  );
  worker.on('completed', () => {
    completed += 1;
    if (completed >= count) resolveDone();
  });
  // A failed job (e.g. a processor error cannot happen here, but a lock error
  // could) still counts as handled, so we do not wait for the timeout.
  worker.on('failed', () => {
    completed += 1;
    if (completed >= count) resolveDone();
  });
  const timer = setTimeout(resolveDone, timeoutMs);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await done;
  clearTimeout(timer);
  await worker.close();
  return { processed };
}

/**
 * fail {prefix, queue, count, reason, opts?}: make `count` failed jobs (with extra job
 * `opts`, e.g. removeOnComplete) the way production does,
 * by a Worker whose processor throws `<reason> #<n>`. The queue must hold no other
 * waiting jobs (the worker would take them too). Prints {"ids": [...]}.
 */
async function failJobs(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const reason = requireString(args, 'reason');
  const count = args.count ?? 1;
  if (!Number.isInteger(count) || count < 1) {
    throw new UsageError('args.count must be a positive integer');
  }
  const queue = res.queue(name, prefix);
  const jobs = await queue.addBulk(
    Array.from({ length: count }, (_, n) => ({
      name: 'poison',
      data: { n, payload: { text: `payload ${n}`, list: [n, n + 1] } },
      opts: { attempts: 1, ...(args.opts ?? {}) },
    })),
  );
  const worker = res.track(
    new Worker(
      name,
      async job => {
        throw new Error(`${reason} #${job.data.n}`);
      },
      { connection: res.connection, prefix, concurrency: 50, autorun: false },
    ),
  );
  const failed = waitForEvents(worker, ['failed'], count, 20000);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await failed;
  await worker.close();
  return { ids: jobs.map(j => j.id) };
}

/**
 * where {prefix, queue, ids}: for each id, its state in the queue and in `<queue>-dlq`
 * (null where absent), in one Node start: {"<id>": {"source": "waiting", "dlq": null}}.
 */
async function where(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  if (!Array.isArray(args.ids)) {
    throw new UsageError('args.ids must be a list of job ids');
  }
  const source = res.queue(name, prefix);
  const dlq = res.queue(`${name}-dlq`, prefix);
  const out = {};
  for (const id of args.ids.map(String)) {
    const inSource = await Job.fromId(source, id);
    const inDlq = await Job.fromId(dlq, id);
    out[id] = {
      source: inSource ? await inSource.getState() : null,
      dlq: inDlq ? await inDlq.getState() : null,
    };
  }
  return out;
}

/**
 * idle-workers {prefix, queues, seconds}: always-on Workers (seed 000's WORKER_INPROCESS=1)
 * on each queue, idling for `seconds`, then closed. For the idle-cost benchmark.
 */
async function idleWorkers(res, args) {
  const prefix = requireString(args, 'prefix');
  if (!Array.isArray(args.queues) || args.queues.length === 0) {
    throw new UsageError('args.queues must be a non-empty list');
  }
  const seconds = Number(args.seconds ?? 10);
  const workers = args.queues.map(name =>
    res.track(new Worker(name, async () => ({ ok: true }), { connection: res.connection, prefix })),
  );
  await new Promise(resolve => setTimeout(resolve, seconds * 1000));
  for (const worker of workers) await worker.close();
  return { workers: workers.length, seconds };
}

async function setPaused(res, args, paused) {
  const prefix = requireString(args, 'prefix');
  const queue = res.queue(requireString(args, 'queue'), prefix);
  await (paused ? queue.pause() : queue.resume());
  return { paused: await queue.isPaused() };
}

async function isPaused(res, args) {
  const prefix = requireString(args, 'prefix');
  const queue = res.queue(requireString(args, 'queue'), prefix);
  return { paused: await queue.isPaused() };
}

async function log(res, args) {
  const prefix = requireString(args, 'prefix');
  const queue = res.queue(requireString(args, 'queue'), prefix);
  const id = requireId(args);
  if (typeof args.line !== 'string') {
    throw new UsageError('args.line must be a string');
  }
  const found = await Job.fromId(queue, id);
  if (!found) {
    throw new Error(`job ${id} not found in ${prefix}:${queue.name}`);
  }
  await found.log(args.line);
  return { ok: true };
}

/**
 * attempts {prefix, queue, attempts, logLines?, data?}: one job 'flaky' that fails every one
 * of its `attempts` attempts (no backoff), as a Worker runs it: each attempt writes
 * `logLines` (default 1) job log lines (`attempt <n> line <i>`, job.log) and reports
 * progress ({attempt: n}) before it throws
 * `flaky failure on attempt <n>`. The queue must hold no other waiting jobs. Prints {"id"}.
 */
async function attemptsJob(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const attempts = args.attempts ?? 3;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new UsageError('args.attempts must be a positive integer');
  }
  const logLines = args.logLines ?? 1;
  const queue = res.queue(name, prefix);
  const added = await queue.add('flaky', args.data ?? { n: 1 }, { attempts });
  let resolveDone;
  const done = new Promise(resolve => {
    resolveDone = resolve;
  });
  const worker = res.track(
    new Worker(
      name,
      async job => {
        const attempt = job.attemptsMade + 1;
        for (let i = 0; i < logLines; i += 1) await job.log(`attempt ${attempt} line ${i}`);
        await job.updateProgress({ attempt });
        throw new Error(`flaky failure on attempt ${attempt}`);
      },
      { connection: res.connection, prefix, concurrency: 1, autorun: false },
    ),
  );
  worker.on('failed', job => {
    if (job && job.attemptsMade >= attempts) resolveDone();
  });
  const timer = setTimeout(resolveDone, 20000);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await done;
  clearTimeout(timer);
  await worker.close();
  return { id: added.id };
}

/**
 * flow {prefix, queue}: a FlowProducer parent 'assemble' in `queue` with four children in
 * `<queue>-children`: one completed (its parent's `:processed`), one failed with
 * ignoreDependencyOnFailure (the parent's `:failed`), two delayed an hour (still pending,
 * `:dependencies`). Prints {"parent": id, "children": {"done","ignored","pending":[...]}}.
 */
async function flowJob(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const childQueue = `${name}-children`;
  const flow = res.track(new FlowProducer({ connection: res.connection, prefix }));
  const child = (n, extra = {}) => ({
    name: 'fetch-section',
    queueName: childQueue,
    data: { n },
    opts: extra,
  });
  const tree = await flow.add({
    name: 'assemble',
    queueName: name,
    data: { report: 'weekly' },
    children: [
      child(0),
      child(1, { ignoreDependencyOnFailure: true }),
      child(2, { delay: HOUR_MS }),
      child(3, { delay: HOUR_MS }),
    ],
  });
  const worker = res.track(
    new Worker(
      childQueue,
      async job => {
        if (job.data.n === 1) throw new Error('section 1 is missing');
        return { rows: job.data.n };
      },
      { connection: res.connection, prefix, concurrency: 1, autorun: false },
    ),
  );
  const finished = waitForEvents(worker, ['failed', 'completed'], 2, 10000);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await finished;
  await worker.close();
  const ids = tree.children.map(c => c.job.id);
  return {
    parent: tree.job.id,
    children: { done: ids[0], ignored: ids[1], pending: [ids[2], ids[3]] },
  };
}

/**
 * workers {prefix, queue, count?, seconds, maxDataPoints?, name?}: `count` (default 1)
 * always-on Workers on `queue` with `metrics: {maxDataPoints}` (default 60) and, when
 * given, the Worker `name` option, connected for `seconds`, then closed. Each completes its
 * jobs, or fails a job whose data has `fail: true`. For queueops' `workers` and throughput
 * tests (run in the background while the test looks). Prints {"workers", "completed",
 * "failed"}.
 */
async function connectedWorkers(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  const count = args.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 20) {
    throw new UsageError('args.count must be an integer from 1 to 20');
  }
  const seconds = Number(args.seconds ?? 5);
  const maxDataPoints = args.maxDataPoints ?? 60;
  let completed = 0;
  let failed = 0;
  const workers = [];
  for (let i = 0; i < count; i += 1) {
    const worker = res.track(
      new Worker(
        name,
        async job => {
          if (job.data && job.data.fail) throw new Error(`boom ${job.id}`);
          return { ok: true };
        },
        {
          connection: res.connection,
          prefix,
          metrics: { maxDataPoints },
          ...(args.name ? { name: `${args.name}-${i}` } : {}),
        },
      ),
    );
    worker.on('completed', () => {
      completed += 1;
    });
    worker.on('failed', () => {
      failed += 1;
    });
    workers.push(worker);
  }
  await Promise.all(workers.map(w => w.waitUntilReady()));
  await new Promise(resolve => setTimeout(resolve, seconds * 1000));
  for (const worker of workers) await worker.close();
  return { workers: workers.length, completed, failed };
}

/**
 * npm-snapshot {prefix, queues}: what a dashboard built on npm bullmq sends for "counts and
 * workers of every queue": getJobCounts() and getWorkers() per queue, once to warm up (the
 * script load), then once counted on the shared connection (every command it sends, by
 * name). For queueops' snapshot-with-workers benchmark. Prints {"commands", "total",
 * "workers": {queue: n}, "counts": {queue: {...}}}.
 */
async function npmSnapshot(res, args) {
  const prefix = requireString(args, 'prefix');
  if (!Array.isArray(args.queues) || args.queues.length === 0) {
    throw new UsageError('args.queues must be a non-empty list');
  }
  const queues = args.queues.map(name => res.queue(name, prefix));
  const once = async () => {
    const counts = {};
    const workers = {};
    for (const queue of queues) {
      counts[queue.name] = await queue.getJobCounts();
      workers[queue.name] = (await queue.getWorkers()).length;
    }
    return { counts, workers };
  };
  await once();
  const commands = {};
  const conn = res.connection;
  const send = conn.sendCommand.bind(conn);
  conn.sendCommand = (command, ...rest) => {
    const name = String(command.name).toUpperCase();
    commands[name] = (commands[name] || 0) + 1;
    return send(command, ...rest);
  };
  const seen = await once();
  conn.sendCommand = send;
  const total = Object.values(commands).reduce((a, b) => a + b, 0);
  return { commands, total, ...seen };
}

/**
 * fail-with {prefix, queue, jobs: [{name, data, reason}]}: add the jobs and fail each by a
 * Worker whose processor throws `new Error(reason)` for it (realistic, varied reasons, with
 * the Worker's real stack trace). The queue must hold no other waiting jobs. {"ids": [...]}.
 */
async function failWith(res, args) {
  const prefix = requireString(args, 'prefix');
  const name = requireString(args, 'queue');
  if (!Array.isArray(args.jobs) || args.jobs.length === 0) {
    throw new UsageError('args.jobs must be a non-empty list of {name, data, reason}');
  }
  const queue = res.queue(name, prefix);
  const jobs = await queue.addBulk(
    args.jobs.map(j => ({ name: j.name ?? 'job', data: j.data ?? {}, opts: { attempts: 1 } })),
  );
  const reasons = new Map(jobs.map((job, i) => [job.id, String(args.jobs[i].reason)]));
  const worker = res.track(
    new Worker(
      name,
      async job => {
        throw new Error(reasons.get(job.id) ?? 'unexpected job');
      },
      { connection: res.connection, prefix, concurrency: 50, autorun: false },
    ),
  );
  const failed = waitForEvents(worker, ['failed'], jobs.length, 20000);
  worker.run().catch(err => process.stderr.write(`worker.run: ${err.message}\n`));
  await failed;
  await worker.close();
  return { ids: jobs.map(j => j.id) };
}

const COMMANDS = {
  populate,
  counts,
  job,
  add,
  process: processJobs,
  fail: failJobs,
  'fail-with': failWith,
  'idle-workers': idleWorkers,
  workers: connectedWorkers,
  'npm-snapshot': npmSnapshot,
  where,
  pause: (res, args) => setPaused(res, args, true),
  resume: (res, args) => setPaused(res, args, false),
  'is-paused': isPaused,
  log,
  attempts: attemptsJob,
  flow: flowJob,
};

// --------------------------------------------------------------------------
// main
// --------------------------------------------------------------------------

function parseArgv(argv) {
  const [command, raw = '{}'] = argv;
  if (!command || !Object.hasOwn(COMMANDS, command)) {
    throw new UsageError(
      `usage: bullmq-cli.mjs <command> '<json args>'; commands: ${Object.keys(COMMANDS).join(', ')}`,
    );
  }
  let args;
  try {
    args = JSON.parse(raw);
  } catch (err) {
    throw new UsageError(`args is not valid JSON: ${err.message}`);
  }
  if (!args || typeof args !== 'object' || Array.isArray(args)) {
    throw new UsageError('args must be a JSON object');
  }
  return { command, args };
}

async function main() {
  const watchdog = setTimeout(() => {
    process.stderr.write(`bullmq-cli: command did not finish within ${COMMAND_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, COMMAND_TIMEOUT_MS);
  watchdog.unref();

  let res;
  let output;
  let exitCode = 0;
  try {
    const { command, args } = parseArgv(process.argv.slice(2));
    res = new Resources(REDIS_URL, parseClusterNodes(REDIS_CLUSTER_NODES));
    await res.connect();
    const result = await COMMANDS[command](res, args);
    output = JSON.stringify(result === undefined ? null : result);
  } catch (err) {
    process.stderr.write(`${err instanceof UsageError ? '' : 'bullmq-cli: '}${err?.message ?? err}\n`);
    exitCode = 1;
  }
  if (res) {
    const errors = await res.closeAll();
    for (const err of errors) {
      process.stderr.write(`bullmq-cli: error while closing: ${err?.message ?? err}\n`);
    }
  }
  if (exitCode === 0) {
    process.stdout.write(`${output}\n`);
  }
  process.exitCode = exitCode;
  // Everything is closed, so Node should exit by itself right away. If some
  // handle still lingers, say so and exit anyway rather than hang the tests.
  setTimeout(() => {
    process.stderr.write('bullmq-cli: open handles after close, forcing exit\n');
    process.exit(exitCode);
  }, 2000).unref();
}

await main();
