#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-enable-shard", process.argv.slice(2));
