#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-print-stats", process.argv.slice(2));
