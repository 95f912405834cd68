#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-replicator", process.argv.slice(2));
