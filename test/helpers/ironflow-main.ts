// Runs the real `ironflow` entry point from source (tests spawn this with `node --import tsx`).
import { main } from '../../src/main.js';

await main(process.argv.slice(2));
