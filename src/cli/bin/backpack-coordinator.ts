#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator", process.argv.slice(2));
