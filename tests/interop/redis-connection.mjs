// The Redis connection of the interop helpers (bullmq-cli.mjs, drain-endpoint.mjs):
// a plain ioredis client on REDIS_URL, or, when REDIS_CLUSTER_NODES
// ("host:port,host:port,...") is set, an ioredis Cluster on those startup nodes.

import IORedis from 'ioredis';

export class UsageError extends Error {}

/** REDIS_CLUSTER_NODES ("host:port,...") as ioredis Cluster startup nodes. */
export function parseClusterNodes(csv) {
  return csv
    .split(',')
    .map(s => s.trim())
    .filter(Boolean)
    .map(hostPort => {
      const colon = hostPort.lastIndexOf(':');
      const host = hostPort.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      const port = Number(hostPort.slice(colon + 1));
      if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
        throw new UsageError(`REDIS_CLUSTER_NODES: ${JSON.stringify(hostPort)} is not host:port`);
      }
      return { host, port };
    });
}

/**
 * The one connection: a Cluster client when startup nodes are given, else a plain
 * Redis on `url`. BullMQ requires maxRetriesPerRequest null (Workers block); on a
 * Cluster it reads it from redisOptions, the options of each node's connection.
 * Workers' blocking connections are made by BullMQ with duplicate(), which its
 * client adapter makes cluster-aware (a new Cluster on the same startup nodes).
 */
export function connect(url, clusterNodes) {
  if (clusterNodes.length === 0) {
    return new IORedis(url, { maxRetriesPerRequest: null });
  }
  // The default clusterRetryStrategy (retry forever) is kept, so a node
  // restart mid-command is survived; an unreachable cluster still fails fast,
  // as the first failed slot refresh emits 'error' and connect() rejects.
  return new IORedis.Cluster(clusterNodes, { redisOptions: { maxRetriesPerRequest: null } });
}
