#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-add-shard", process.argv.slice(2));
