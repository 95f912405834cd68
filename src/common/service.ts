/**
 * The shape every backpack service shares. `start()` resolves once it is listening (with `port: 0` the real
 * port is known then, in `url`); `stop()` is idempotent: it refuses new work with 503, drains what is in
 * flight, then closes.
 */
export interface Service {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The base URL the service answers on, e.g. `http://127.0.0.1:40123`; throws before `start()`. */
  readonly url: string;
}
