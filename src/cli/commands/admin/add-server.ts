import { parseServerUrl, validateId } from "../../../cluster/rules.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withClusterMap } from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin add-server",
    summary: "Registers a storage node under an id, or changes the URL of a registered one.",
    positionals: [
      ...MAP_POSITIONALS,
      { name: "id", description: "server id, e.g. 1 (letters, digits, _ . -)" },
      { name: "url", description: "the node's base URL, http(s)://<host>:<port>, e.g. http://one:10001" },
    ],
    options: [],
    notes: `
Stored in /servers-map as {"<id>":{"host":"one","port":"10001"}}, the original's layout (an https URL adds
"scheme":"https"). Coordinators and replicators pick the change up at once.

Output: "Server 1 added: http://one:10001", "Server 1 changed: http://one:10001 (was http://old:10001)" or
"Server 1 unchanged: http://one:10001".

Exit codes: 0 done, 1 refused (cluster map not initialised, ZooKeeper unreachable), 2 wrong arguments (an id
or URL that is not valid: the URL needs http or https, a host and a port, and no path).

Example:
  backpack-coordinator-add-server one.local:2181 /backpack 1 http://one:10001`,
  },
  async run(args, io) {
    const id = validateId("server", requirePositional(args, "id"));
    const { url } = parseServerUrl(requirePositional(args, "url"));
    const before = await withClusterMap(args, async (map) => {
      const previous = map.snapshot().servers[id]?.url;
      await map.addServer(id, url);
      return previous;
    });
    if (before === undefined) io.stdout(`Server ${id} added: ${url}\n`);
    else if (before === url) io.stdout(`Server ${id} unchanged: ${url}\n`);
    else io.stdout(`Server ${id} changed: ${url} (was ${before})\n`);
    return 0;
  },
};
