#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-init", process.argv.slice(2));
