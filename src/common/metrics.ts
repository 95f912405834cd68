import type { ServerResponse } from "node:http";
import { Registry, collectDefaultMetrics } from "prom-client";

/**
 * Each service owns its registry (an embedded cluster runs several services in one process, and their
 * counters must not mix). Process-wide metrics are added only where asked.
 */
export function createRegistry(labels: Record<string, string> = {}, processMetrics = false): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  if (processMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

export async function sendMetrics(res: ServerResponse, registry: Registry): Promise<void> {
  const text = await registry.metrics();
  res.writeHead(200, { "content-type": registry.contentType, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
