// Tensor / expert parallelism end to end on the tiny model (CPU ranks): `generate` with
// --tensor-parallel 2 as threads, as two processes (--nnodes 2 --node-rank 0/1; also 2 ranks
// a process with -tp 4) and under
// mpirun gives the TP=1 tokens; a size that does not divide is a clear error; a worker process
// killed under a serving rank 0 makes rank 0's request fail instead of hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const bin = process.env.MIXSERVE_BIN ?? path.join(repo, 'build/mixserve');
const execFileAsync = promisify(execFile);

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mixserve-tp-'));
const modelDir = path.join(workdir, 'tiny');
execFileSync(bin, ['make-model', '--preset', 'tiny', '--out', modelDir]);

const GEN = ['generate', '--model', modelDir, '--device', 'cpu', '--threads', '1', '--json',
  '--prompt', 'The quick brown fox', '--max-tokens', '24', '--ignore-eos'];

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function generate(extra, opts = {}) {
  return execFileAsync(bin, [...GEN, ...extra], { timeout: 120000, ...opts });
}

let reference;
test('TP=1 reference', async () => {
  const { stdout } = await generate([]);
  reference = JSON.parse(stdout);
  assert.equal(reference.token_ids.length, 24);
});

test('--tensor-parallel 2 and --expert-parallel as threads match TP=1', async () => {
  for (const extra of [['--tensor-parallel', '2'], ['-tp', '2', '--expert-parallel'],
    ['-tp', '4', '--expert-parallel']]) {
    const { stdout } = await generate(extra);
    assert.deepEqual(JSON.parse(stdout).token_ids, reference.token_ids, extra.join(' '));
  }
});

test('two processes (--nnodes 2) match TP=1; the worker prints nothing and exits 0', async () => {
  const port = String(await freePort());
  const launch = ['--tensor-parallel', '2', '--nnodes', '2', '--master-addr', '127.0.0.1',
    '--master-port', port];
  const [r0, r1] = await Promise.all([
    generate([...launch, '--node-rank', '0']),
    generate([...launch, '--node-rank', '1']),
  ]);
  assert.deepEqual(JSON.parse(r0.stdout).token_ids, reference.token_ids);
  assert.equal(r1.stdout, '');
});

test('two processes of two ranks each (-tp 4 --nnodes 2, EP) match TP=1', async () => {
  const port = String(await freePort());
  const launch = ['-tp', '4', '--expert-parallel', '--nnodes', '2', '--master-addr',
    '127.0.0.1', '--master-port', port];
  const [r0, r1] = await Promise.all([
    generate([...launch, '--node-rank', '0']),
    generate([...launch, '--node-rank', '1']),
  ]);
  assert.deepEqual(JSON.parse(r0.stdout).token_ids, reference.token_ids);
  assert.equal(r1.stdout, '');
});

function mpirun() {
  const probe = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return null;
  const args = ['-np', '2', '--oversubscribe'];
  if (process.getuid && process.getuid() === 0) args.push('--allow-run-as-root');
  return args;
}

test('mpirun -np 2 matches TP=1', async (t) => {
  const args = mpirun();
  if (!args) {
    t.skip('mpirun not found (install openmpi-bin: scripts/setup.sh)');
    return;
  }
  const port = String(await freePort());
  const { stdout } = await execFileAsync(
    'mpirun', [...args, bin, ...GEN, '--tensor-parallel', '2', '--master-port', port],
    { timeout: 120000, env: { ...process.env, OMPI_MCA_plm_rsh_agent: '' } });
  // Only rank 0 prints; mpirun forwards it.
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  assert.equal(lines.length, 1, stdout);
  assert.deepEqual(JSON.parse(lines[0]).token_ids, reference.token_ids);
});

test('--tensor-parallel 3 on 4 heads is a clear error', async () => {
  await assert.rejects(generate(['--tensor-parallel', '3']), (err) => {
    assert.notEqual(err.code, 0);
    assert.match(err.stderr, /num_attention_heads \(4\) is not divisible by 3/);
    return true;
  });
});

test('a killed worker makes rank 0 fail the request instead of hanging', async () => {
  const port = String(await freePort());
  const httpPort = String(await freePort());
  const launch = ['serve', '--model', modelDir, '--device', 'cpu', '--threads', '1',
    '--tensor-parallel', '2', '--nnodes', '2', '--master-port', port];
  const rank0 = spawn(bin, [...launch, '--node-rank', '0', '--port', httpPort],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const rank1 = spawn(bin, [...launch, '--node-rank', '1'], { stdio: 'ignore' });
  let rank0Err = '';
  rank0.stderr.on('data', (d) => { rank0Err += d; });
  try {
    const base = `http://127.0.0.1:${httpPort}`;
    const deadline = Date.now() + 60000;
    for (;;) {
      const ok = await fetch(`${base}/health`).then((r) => r.status === 200, () => false);
      if (ok) break;
      assert.ok(Date.now() < deadline, `rank 0 never became ready: ${rank0Err}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    rank1.kill('SIGKILL');
    await new Promise((r) => rank1.once('exit', r));
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: modelDir, prompt: 'hello', max_tokens: 8 }),
      signal: AbortSignal.timeout(30000),
    });
    const body = await res.text();
    assert.ok(res.status >= 400 || /error/.test(body), `${res.status} ${body}`);
    assert.match(rank0Err + body, /rank|peer|connection|closed/i);
  } finally {
    rank0.kill('SIGTERM');
    rank1.kill('SIGKILL');
  }
});
