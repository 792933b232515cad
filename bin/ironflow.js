#!/usr/bin/env node
// The `ironflow` executable: runs the compiled CLI (npm run build produces dist/).
import('../dist/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/main.js')) {
    console.error('ironflow: not built yet; run `npm run build` first');
  } else {
    console.error(err);
  }
  process.exit(1);
});
