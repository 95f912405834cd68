#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-disable-shard", process.argv.slice(2));
