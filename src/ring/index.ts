/** The ring of servers: membership, failure detection, tick, broadcast and placement (see docs/ring.md). */
export { RingMember, newClusterSecret, type RingMemberDeps, type RingView } from "./ring-member.js";
export { ringMemberConfig, RING_DEFAULTS, type RingMemberConfig } from "./config.js";
export { createRingViewHandler, type RingViewSource } from "./ring-view.js";
export { RingCore, type RingEvent, type Outgoing, type RingCoreStats } from "./core/ring-core.js";
export { coreConfig, type RingCoreConfig, type RingCoreOptions } from "./core/core-config.js";
export { HashRing } from "./core/hash-ring.js";
export { KRings } from "./core/k-rings.js";
export type { Member, MemberStatus } from "./core/member-table.js";
export type { Broadcast } from "./core/broadcast-log.js";
export type { TokenView } from "./core/token.js";
export { ServiceRing, advertiseOf, type ServiceRingView } from "./service-ring.js";
export { UrlWatch, authority, type Verdict } from "./url-watch.js";
