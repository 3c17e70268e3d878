#!/usr/bin/env node
// "The dashboard way", for bench/snapshot_vs_dashboard.py: what Bull Board or a hand-written
// dashboard does with npm bullmq's Queue API to show what `queueops snapshot` shows. Per
// queue: getJobCounts(), a page of 10 waiting jobs (their names) and a page of 10 failed
// jobs (their reasons).
//
//   node bench/dashboard.mjs '{"url","prefix","queues":[...],"page":10}'
//
// Protocol on stdin/stdout, one line each, so the caller can reset SLOWLOG between steps:
//   -> {"ready": true, "counts": {<queue>: getJobCounts()}}   (after one warm-up round)
//   <- "go <rounds>"   -> {"done": <rounds>}                  (repeatable)
//   <- "exit"          (or EOF)
// npm bullmq comes from tests/interop (./scripts/test installs it).

import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

const args = JSON.parse(process.argv[2]);
const page = args.page ?? 10;
const connection = new IORedis(args.url, { maxRetriesPerRequest: null });
const queues = args.queues.map(name => new Queue(name, { connection, prefix: args.prefix }));

async function round() {
  const shown = {};
  for (const queue of queues) {
    const counts = await queue.getJobCounts();
    const waiting = await queue.getJobs(['waiting'], 0, page - 1);
    const failed = await queue.getJobs(['failed'], 0, page - 1);
    shown[queue.name] = {
      counts,
      names: waiting.map(job => job.name),
      reasons: failed.map(job => job.failedReason),
    };
  }
  return shown;
}

const warm = await round();
const counts = Object.fromEntries(Object.entries(warm).map(([name, s]) => [name, s.counts]));
process.stdout.write(JSON.stringify({ ready: true, counts }) + '\n');

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [verb, n] = line.trim().split(' ');
  if (verb !== 'go') break;
  for (let i = 0; i < Number(n); i++) await round();
  process.stdout.write(JSON.stringify({ done: Number(n) }) + '\n');
}
lines.close();
for (const queue of queues) await queue.close();
await connection.quit();
process.exit(0); // stdin may still be open: do not wait for it
