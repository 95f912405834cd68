#!/usr/bin/env node
import { main } from "../main.js";

await main("backpack-coordinator-nginx-config", process.argv.slice(2));
