import type { S3Permission } from "../../../cluster/types.js";
import { parseGrant } from "../../../s3/access.js";
import { addKey, newAccessKey, revokeKey } from "../../../s3/access-keys.js";
import { UsageError } from "../../args.js";
import { optString, requirePositional, type Command } from "../../command.js";
import { JSON_OPTION, MAP_POSITIONALS, printJson, withClusterMap } from "./shared.js";

const ACTIONS = ["create", "list", "revoke"] as const;

export const command: Command = {
  spec: {
    name: "backpack admin s3-key",
    summary:
      "Creates, lists or revokes the access keys of the S3 API (kept in the cluster map); a secret is printed once, at creation.",
    positionals: [
      { name: "action", description: `${ACTIONS.join(", ")}` },
      ...MAP_POSITIONALS,
      { name: "id", description: "revoke: the access key id", optional: true },
    ],
    options: [
      { name: "name", type: "string", description: "create: a name for the key (who or what uses it)" },
      {
        name: "grant",
        type: "string",
        multiple: true,
        description:
          "create: <bucket>:<read|write|owner>, * for every bucket (repeatable; *:owner may create buckets)",
      },
      JSON_OPTION,
    ],
    notes: `
Every coordinator's S3 endpoint sees a change at once (docs/s3.md, "Access keys"). The secret signs
requests (AWS Signature V4), so the cluster map holds it: protect the map (ZooKeeper ACLs, the embedded
map's file mode). It is printed by create only, never again, and never logged.

Output: create prints the id and the secret ("Access key id: BK... / Secret access key: ..."); list prints
one key a line (id, name, created, grants); revoke prints "Revoked <id>". --json prints JSON instead.

Exit codes: 0 done, 1 refused (no such key, cluster map not initialised or unreachable), 2 wrong arguments.

Examples:
  backpack admin s3-key create zk1:2181 /backpack --name backup --grant photos:write --grant logs:read
  backpack admin s3-key list zk1:2181 /backpack
  backpack admin s3-key revoke zk1:2181 /backpack BK3F9Q2L7T1XW0ZC8R4M`,
  },
  async run(args, io) {
    const action = requirePositional(args, "action");
    const id = args.positionals.id;
    const json = args.options.json === true;
    if (!(ACTIONS as readonly string[]).includes(action)) {
      throw new UsageError(`<action> must be one of ${ACTIONS.join(", ")}, got "${action}"`);
    }
    if ((action === "revoke") !== (id !== undefined)) {
      throw new UsageError(
        action === "revoke" ? "revoke needs the access key id" : `${action} takes no key id`,
      );
    }
    const grantTexts = (args.options.grant as string[] | undefined) ?? [];
    const name = optString(args, "name");
    if (action !== "create" && (grantTexts.length > 0 || name !== undefined)) {
      throw new UsageError("--name and --grant go with create");
    }
    if (action === "create") {
      if (grantTexts.length === 0)
        throw new UsageError("create needs at least one --grant <bucket>:<permission>");
      const grants: Record<string, S3Permission> = {};
      for (const text of grantTexts) {
        const grant = parseGrant(text);
        if (grant === undefined)
          throw new UsageError(`--grant must be <bucket>:<read|write|owner>, got "${text}"`);
        grants[grant[0]] = grant[1];
      }
      const key = await withClusterMap(args, (map) =>
        map.updateS3(addKey(newAccessKey(name ?? "", grants, Date.now()))),
      );
      if (json) io.stdout(printJson({ id: key.id, secret: key.secret, name: key.name, grants: key.grants }));
      else {
        io.stdout(`Access key id:     ${key.id}\nSecret access key: ${key.secret}\n`);
        io.stdout("(the secret is not shown again: keep it now)\n");
      }
      return 0;
    }
    if (action === "list") {
      const keys = await withClusterMap(args, async (map) => Object.values(map.snapshot().s3.keys));
      const shown = keys
        .map((k) => ({ id: k.id, name: k.name, created: k.created, grants: { ...k.grants } }))
        .sort((a, b) => (a.created < b.created ? -1 : 1));
      if (json) io.stdout(printJson(shown));
      else if (shown.length === 0) io.stdout("No access keys.\n");
      else {
        for (const k of shown) {
          const grants = Object.entries(k.grants)
            .map(([b, p]) => `${b}:${p}`)
            .join(" ");
          io.stdout(`${k.id}  ${k.name || "-"}  ${k.created}  ${grants}\n`);
        }
      }
      return 0;
    }
    const revoked = await withClusterMap(args, (map) => map.updateS3(revokeKey(id as string)));
    if (!revoked) {
      io.stderr(`backpack admin s3-key: no access key ${id}\n`);
      return 1;
    }
    io.stdout(json ? printJson({ revoked: id }) : `Revoked ${id}\n`);
    return 0;
  },
};
