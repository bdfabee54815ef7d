// Starts `mixserve serve` on a tiny model and a free port, waits for /health, stops it.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import OpenAI from 'openai';

export const bin = process.env.MIXSERVE_BIN ?? 'build/mixserve';

let modelDir;
// One tiny Mixtral (real 32k vocabulary, Mixtral-Instruct chat template) per test process.
export function tinyModel() {
  if (!modelDir) {
    modelDir = join(mkdtempSync(join(tmpdir(), 'mixserve-e2e-')), 'tiny');
    if (!existsSync(join(modelDir, 'config.json'))) {
      execFileSync(bin, ['make-model', '--preset', 'tiny', '--out', modelDir]);
    }
  }
  return modelDir;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function startServer(extraArgs = []) {
  const model = tinyModel();
  const port = await freePort();
  const args = ['serve', '--model', model, '--served-model-name', 'tiny', '--port', String(port),
    '--device', 'cpu', '--threads', '2', ...extraArgs];
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`mixserve exited early:\n${log}`);
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`mixserve not healthy after 60 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port, base, proc, exited,
    log: () => log,
    client: (opts = {}) => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, ...opts }),
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
