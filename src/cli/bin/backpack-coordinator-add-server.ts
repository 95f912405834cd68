#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-add-server", process.argv.slice(2));
