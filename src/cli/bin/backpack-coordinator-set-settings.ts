#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-set-settings", process.argv.slice(2));
