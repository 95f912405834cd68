/**
 * The embedded cluster's shape: the seed's layout generalised. With 3 shards × 2 replicas it is exactly the
 * seed's picture: shard 1 on servers 1 and 4, shard 2 on 2 and 5, shard 3 on 3 and 6 (a shard's replicas are
 * one "row" apart, so in a real deployment they land on different machines).
 */
export interface DevLayout {
  coordinatorPorts: number[];
  replicatorPort: number;
  /** The S3 listener of each coordinator: after the nodes. */
  s3Ports: number[];
  servers: { id: string; port: number }[];
  shards: { id: string; servers: string[] }[];
}

export interface LayoutOptions {
  shards: number;
  replicas: number;
  coordinators: number;
  /** First port; 0 gives every service a free port. */
  basePort: number;
}

/** Coordinators on basePort, basePort+1, ...; the replicator next; nodes from basePort+10; S3 after them. */
export function devLayout({ shards, replicas, coordinators, basePort }: LayoutOptions): DevLayout {
  const port = (offset: number): number => (basePort === 0 ? 0 : basePort + offset);
  const servers: DevLayout["servers"] = [];
  for (let i = 0; i < shards * replicas; i++) servers.push({ id: String(i + 1), port: port(10 + i) });
  const shardList: DevLayout["shards"] = [];
  for (let s = 0; s < shards; s++) {
    const ids: string[] = [];
    for (let r = 0; r < replicas; r++) ids.push(String(s + 1 + r * shards));
    shardList.push({ id: String(s + 1), servers: ids });
  }
  return {
    coordinatorPorts: Array.from({ length: coordinators }, (_, i) => port(i)),
    replicatorPort: port(coordinators),
    s3Ports: Array.from({ length: coordinators }, (_, i) => port(10 + servers.length + i)),
    servers,
    shards: shardList,
  };
}

/** The ports a layout needs that are fixed (not 0). */
export function fixedPorts(layout: DevLayout): number[] {
  return [
    ...layout.coordinatorPorts,
    layout.replicatorPort,
    ...layout.servers.map((s) => s.port),
    ...layout.s3Ports,
  ].filter((p) => p !== 0);
}
