import type { Command } from "../../command.js";
import { shardStateCommand } from "./shard-state.js";

export const command: Command = shardStateCommand(false);
