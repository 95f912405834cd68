#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-set-shard-servers", process.argv.slice(2));
