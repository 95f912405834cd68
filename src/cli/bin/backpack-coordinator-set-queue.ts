#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-set-queue", process.argv.slice(2));
