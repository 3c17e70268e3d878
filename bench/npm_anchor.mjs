#!/usr/bin/env node
// npm bullmq's own way to do what queueops does, timed and counted, for bench/scale.py.
//
//   node bench/npm_anchor.mjs <command> '<json args>'    (Redis from env REDIS_URL)
//
//   remove  {prefix, queue, id}                     getJob + job.remove (a poison job out)
//   bulk    {prefix, queue, dlq, count, pattern, parallel}
//           failed jobs whose failedReason matches, oldest first, `parallel` at a time:
//           add to the DLQ queue with the same name, data and options, then remove
//   replay  {prefix, queue, dlq, count, parallel}   the DLQ's oldest waiting jobs back the
//           same way (add to the queue, remove from the DLQ)
//
// Prints one JSON document: {wallMs, commands, byCommand, done}. Commands are counted as
// ioredis sends them (scripts and pipelines included), only while the operation runs.
//
// npm bullmq is the one tests/interop installs (./scripts/test).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

console.log = console.error; // only our JSON on stdout

const [command, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs || '{}');
const connection = new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });

const byCommand = {};
let counting = false;
const send = connection.sendCommand.bind(connection);
connection.sendCommand = (cmd, ...rest) => {
  if (counting) byCommand[cmd.name] = (byCommand[cmd.name] || 0) + 1;
  return send(cmd, ...rest);
};

async function inChunks(items, size, fn) {
  for (let i = 0; i < items.length; i += size) {
    await Promise.all(items.slice(i, i + size).map(fn));
  }
}

async function moveAll(from, to, state, count, parallel, keep) {
  let done = 0;
  while (done < count) {
    const jobs = await from.getJobs([state], 0, Math.min(parallel, count - done) - 1, true);
    if (jobs.length === 0) break;
    const picked = jobs.filter(keep);
    if (picked.length === 0) break;
    await inChunks(picked, parallel, async job => {
      // npm refuses a custom id that looks like an integer (its own ids are), so the copy
      // gets a new id: npm's way cannot keep the id, queueops' does.
      await to.add(job.name, job.data, job.opts);
      await job.remove();
    });
    done += picked.length;
  }
  return done;
}

const operations = {
  async remove({ prefix, queue, id }) {
    const q = new Queue(queue, { connection, prefix });
    await q.waitUntilReady();
    return [q, async () => {
      const job = await q.getJob(String(id));
      await job.remove();
      return 1;
    }];
  },
  async bulk({ prefix, queue, dlq, count, pattern, parallel }) {
    const src = new Queue(queue, { connection, prefix });
    const dst = new Queue(dlq, { connection, prefix });
    await Promise.all([src.waitUntilReady(), dst.waitUntilReady()]);
    const re = new RegExp(pattern);
    return [src, () => moveAll(src, dst, 'failed', count, parallel, j => re.test(j.failedReason))];
  },
  async replay({ prefix, queue, dlq, count, parallel }) {
    const src = new Queue(dlq, { connection, prefix });
    const dst = new Queue(queue, { connection, prefix });
    await Promise.all([src.waitUntilReady(), dst.waitUntilReady()]);
    return [src, () => moveAll(src, dst, 'wait', count, parallel, () => true)];
  },
};

try {
  const [queue, run] = await operations[command](args);
  counting = true;
  const started = performance.now();
  const done = await run();
  const wallMs = performance.now() - started;
  counting = false;
  const commands = Object.values(byCommand).reduce((a, b) => a + b, 0);
  process.stdout.write(`${JSON.stringify({ wallMs, commands, byCommand, done })}\n`);
  await queue.close();
  await connection.quit();
  process.exit(0);
} catch (err) {
  process.stderr.write(`npm_anchor ${command}: ${err?.stack ?? err}\n`);
  process.exit(1);
}
