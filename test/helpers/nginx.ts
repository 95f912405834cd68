import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { freePort, waitFor } from "./wait.js";

/**
 * A real nginx (Debian's package) in the foreground (`daemon off;`), with its pid file, error log and every
 * `*_temp_path` in a temp dir, on a free loopback port. The site config is a separate file (`sitePath`) that
 * the main config includes, so a test can rewrite it and `reload()` (SIGHUP) as an operator would.
 */
export class NginxHandle {
  proc: ChildProcess | undefined;
  stderr = "";

  constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get listen(): string {
    return `127.0.0.1:${this.port}`;
  }

  get confPath(): string {
    return join(this.dir, "nginx.conf");
  }

  get sitePath(): string {
    return join(this.dir, "site.conf");
  }

  get pidPath(): string {
    return join(this.dir, "nginx.pid");
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(site: string): Promise<void> {
    await writeFile(this.sitePath, site);
    const d = this.dir;
    await mkdir(join(d, "temp"), { recursive: true });
    await writeFile(
      this.confPath,
      [
        "daemon off;",
        "worker_processes 1;",
        `pid ${join(d, "nginx.pid")};`,
        `error_log ${join(d, "error.log")} warn;`,
        "events { worker_connections 1024; }",
        "http {",
        "    access_log off;",
        `    client_body_temp_path ${join(d, "temp", "body")};`,
        `    proxy_temp_path ${join(d, "temp", "proxy")};`,
        `    fastcgi_temp_path ${join(d, "temp", "fastcgi")};`,
        `    uwsgi_temp_path ${join(d, "temp", "uwsgi")};`,
        `    scgi_temp_path ${join(d, "temp", "scgi")};`,
        `    include ${this.sitePath};`,
        "}",
        "",
      ].join("\n"),
    );
    // `-p` keeps nginx from touching /var/log/nginx before it reads our error_log.
    const proc = spawn("nginx", ["-p", d, "-e", join(d, "error.log"), "-c", this.confPath], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.proc = proc;
    proc.stderr.setEncoding("utf8").on("data", (s: string) => (this.stderr += s));
    await waitFor(
      async () => {
        if (!this.running) throw new Error(`nginx exited: ${this.stderr}`);
        const res = await fetch(`${this.url}/`, { method: "HEAD" }).catch(() => undefined);
        return res !== undefined;
      },
      { timeoutMs: 10_000, what: "nginx to listen" },
    );
  }

  /** Writes a new site config (when given) and asks nginx to reload it (SIGHUP). */
  async reload(site?: string): Promise<void> {
    if (site !== undefined) await writeFile(this.sitePath, site);
    this.proc?.kill("SIGHUP");
  }

  async stop(): Promise<void> {
    if (!this.running || !this.proc) return;
    const proc = this.proc;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    // SIGTERM, not SIGKILL: the master must take its worker processes down with it (they hold the port).
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Starts nginx with `site(listen)`: an `http`-context snippet, e.g. the generated backpack config. */
export async function startNginx(
  t: Pick<TestContext, "after">,
  site: (listen: string) => string | Promise<string>,
): Promise<NginxHandle> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-nginx-"));
  const handle = new NginxHandle(dir, await freePort());
  // One hook: nginx stops before its temp dir goes.
  t.after(async () => {
    await handle.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await handle.start(await site(handle.listen));
  return handle;
}
