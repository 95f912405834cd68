#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-dump-shards", process.argv.slice(2));
