#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack", process.argv.slice(2));
