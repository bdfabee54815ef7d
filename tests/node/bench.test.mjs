// `mixserve bench offline` and `mixserve bench serve` end to end on the tiny model: the report's
// fields are there and the counts add up (every request accounted for, tokens = the sum over
// requests), and the CSV and SVG files are written beside the JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const bin = process.env.MIXSERVE_BIN ?? path.join(repo, 'build/mixserve');
const execFileAsync = promisify(execFile);

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mixserve-bench-'));
const modelDir = path.join(workdir, 'tiny');
execFileSync(bin, ['make-model', '--preset', 'tiny', '--out', modelDir]);

const STAT_KEYS = ['mean', 'p50', 'p90', 'p99', 'min', 'max'];

function checkRun(run, { requests, inputTokens, outputTokens, streamed = true }) {
  assert.equal(run.num_requests, requests);
  assert.equal(run.completed + run.failed, run.num_requests, 'every request accounted for');
  assert.equal(run.failed, 0, JSON.stringify(run.errors));
  assert.equal(run.input_tokens, inputTokens);
  assert.equal(run.output_tokens, outputTokens);
  for (const k of ['ttft', 'tpot', 'itl', 'e2e']) {
    for (const s of STAT_KEYS) assert.equal(typeof run[k][s], 'number', `${k}.${s}`);
  }
  assert.equal(run.e2e.count, requests);
  if (streamed === true) {
    assert.equal(run.ttft.count, requests);
    // One inter-token gap per token after each request's first.
    assert.equal(run.itl.count, outputTokens - requests);
  } else if (streamed === 'text') {
    // A real server may hold back text (a partial UTF-8 character, a possible stop string):
    // such a token comes in a later chunk, so there are at most as many gaps as tokens.
    assert.ok(run.ttft.count > 0 && run.ttft.count <= requests);
    assert.ok(run.itl.count <= outputTokens - requests);
  }
  assert.ok(run.output_tokens_per_s > 0);
  const d = run.duration_s;
  assert.ok(Math.abs(run.requests_per_s - run.completed / d) < 1e-6 * run.requests_per_s);
  assert.ok(Math.abs(run.total_tokens_per_s - (inputTokens + outputTokens) / d) <
    1e-6 * run.total_tokens_per_s);
}

function checkMeta(report, mode, workloadId) {
  assert.equal(report.mode, mode);
  assert.equal(report.workload_id, workloadId);
  assert.match(report.command_line, new RegExp(`bench ${mode}`));
  assert.ok(report.commit.length > 0);
  assert.ok(['build', 'runtime', 'none'].includes(report.commit_source));
  assert.equal(typeof report.device, 'string');
  assert.equal(typeof report.precision, 'string');
  assert.match(report.timestamp_utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
}

test('bench offline: per-batch runs, counts add up, files written', () => {
  const out = path.join(workdir, 'offline', 'report.json');
  const stdout = execFileSync(bin, ['bench', 'offline', '--model', modelDir, '--device', 'cpu',
    '--threads', '1', '--input-len', '8', '--output-len', '5', '--num-requests', '6',
    '--max-batch', '1,4', '--warmup', '2', '--workload-id', 'OFF-TINY',
    '--latency-budget-ms', '60000', '--out', out], { encoding: 'utf8' });
  assert.match(stdout, /max_batch=1/);
  assert.match(stdout, /sweet spot \(mean e2e <= 60000 ms\): max_batch=/);
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  checkMeta(report, 'offline', 'OFF-TINY');
  assert.equal(report.device, 'cpu');
  assert.equal(report.precision, 'fp32');
  assert.equal(report.runs.length, 2);
  assert.deepEqual(report.runs.map((r) => r.params.max_batch), [1, 4]);
  for (const run of report.runs) {
    checkRun(run, { requests: 6, inputTokens: 6 * 8, outputTokens: 6 * 5 });
    // The engine's own count agrees with the per-request sum (warm-up excluded).
    assert.equal(run.extra.engine_generated_tokens, 6 * 5);
    assert.equal(run.tpot.count, 6);
  }
  // With batch 1, requests run one after another: TTFT grows request by request.
  assert.ok(report.runs[0].ttft.max > report.runs[0].ttft.min);
  assert.notEqual(report.sweet_spot, null);
  assert.equal(report.headline_run, report.sweet_spot.run);
  assert.equal(report.output_tokens_per_s, report.runs[report.headline_run].output_tokens_per_s);
  const csv = fs.readFileSync(path.join(workdir, 'offline', 'report.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 3);
  for (const name of ['tokens_per_s_vs_batch', 'throughput_vs_tpot', 'throughput_vs_e2e']) {
    const svg = fs.readFileSync(path.join(workdir, 'offline', `report_${name}.svg`), 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\n$/);
  }
});

test('bench offline: bad flags are named', () => {
  assert.throws(() => execFileSync(bin, ['bench', 'offline', '--model', modelDir, '--device',
    'cpu', '--max-batch', '1,x'], { encoding: 'utf8', stdio: 'pipe' }), /--max-batch/);
  assert.throws(() => execFileSync(bin, ['bench', 'offline', '--model', modelDir, '--device',
    'cpu', '--input-len', 'gamma:1:2'], { encoding: 'utf8', stdio: 'pipe' }), /--input-len/);
});

// A minimal OpenAI-compatible server: streams max_tokens chunks, then usage, then [DONE].
function startFakeOpenAI() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      const r = JSON.parse(body);
      seen.push({ url: req.url, body: r });
      const n = r.max_tokens;
      const promptTokens = Array.isArray(r.prompt) ? r.prompt.length : 3;
      if (!r.stream) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ choices: [{ text: 'x'.repeat(n), finish_reason: 'length' }],
          usage: { prompt_tokens: promptTokens, completion_tokens: n } }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      for (let i = 0; i < n; ++i) {
        await new Promise((ok) => setTimeout(ok, 2));
        const delta = r.messages ? { choices: [{ index: 0, delta: { content: `t${i}` } }] }
          : { choices: [{ index: 0, text: `t${i}` }] };
        res.write(`data: ${JSON.stringify(delta)}\n\n`);
      }
      res.write(`data: ${JSON.stringify({ choices: [],
        usage: { prompt_tokens: promptTokens, completion_tokens: n } })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, seen })));
}

test('bench serve: rate sweep against an OpenAI-compatible test server', async () => {
  const { server, seen } = await startFakeOpenAI();
  const port = server.address().port;
  const out = path.join(workdir, 'serve', 'report.json');
  try {
    const { stdout } = await execFileAsync(bin, ['bench', 'serve', '--base-url',
      `http://127.0.0.1:${port}`, '--request-rate', '100,inf', '--num-requests', '12',
      '--input-len', '16', '--output-len', 'uniform:2:9', '--workload-id', 'ON-TINY',
      '--slo-ttft', '10000', '--tpot-budget-ms', '1000', '--device-name', 'test server',
      '--out', out]);
    assert.match(stdout, /rate=100/);
    assert.match(stdout, /goodput/);
  } finally {
    server.close();
  }
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  checkMeta(report, 'serve', 'ON-TINY');
  assert.equal(report.device, 'test server');
  assert.equal(report.runs.length, 2);
  assert.equal(seen.length, 24);
  for (const s of seen) {
    assert.equal(s.url, '/v1/completions');
    assert.equal(s.body.ignore_eos, true);
    assert.equal(s.body.prompt.length, 16);
  }
  // The same workload in both runs (the tokens the server was asked for, summed), but no
  // prompt of the second run repeats one of the first (the server's prefix cache).
  const asked = seen.slice(0, 12).reduce((a, s) => a + s.body.max_tokens, 0);
  const first = new Set(seen.slice(0, 12).map((s) => s.body.prompt.join(',')));
  for (const s of seen.slice(12)) assert.ok(!first.has(s.body.prompt.join(',')));
  for (const run of report.runs) {
    checkRun(run, { requests: 12, inputTokens: 12 * 16, outputTokens: asked });
    assert.equal(run.good_requests, 12);
    assert.ok(run.extra.client_cpu_us_per_output_token >= 0);
  }
  assert.equal(report.runs[0].params.request_rate, 100);
  assert.ok(fs.existsSync(path.join(workdir, 'serve', 'report_ttft_vs_rate.svg')));
});

test('bench serve: chat API with text prompts, and non-streaming', async () => {
  const { server, seen } = await startFakeOpenAI();
  const port = server.address().port;
  try {
    const chat = path.join(workdir, 'chat.json');
    await execFileAsync(bin, ['bench', 'serve', '--base-url', `http://127.0.0.1:${port}`,
      '--api', 'chat', '--num-requests', '4', '--input-len', '10', '--output-len', '3',
      '--concurrency', '2', '--out', chat]);
    const r = JSON.parse(fs.readFileSync(chat, 'utf8'));
    checkRun(r.runs[0], { requests: 4, inputTokens: 12, outputTokens: 12 });
    assert.equal(r.runs[0].label, 'concurrency=2');
    assert.equal(seen[0].url, '/v1/chat/completions');
    assert.equal(seen[0].body.messages[0].content.split(' ').length, 10);

    const plain = path.join(workdir, 'plain.json');
    await execFileAsync(bin, ['bench', 'serve', '--base-url', `http://127.0.0.1:${port}`,
      '--no-stream', '--num-requests', '3', '--input-len', '4', '--output-len', '6',
      '--out', plain]);
    const p = JSON.parse(fs.readFileSync(plain, 'utf8'));
    checkRun(p.runs[0], { requests: 3, inputTokens: 12, outputTokens: 18, streamed: false });
    assert.equal(p.runs[0].ttft.count, 0);  // no TTFT without streaming
  } finally {
    server.close();
  }
});

test('bench serve: an unreachable server fails every request and exits non-zero', async () => {
  const probe = net.createServer();
  await new Promise((ok) => probe.listen(0, '127.0.0.1', ok));
  const port = probe.address().port;
  await new Promise((ok) => probe.close(ok));
  const out = path.join(workdir, 'down.json');
  await assert.rejects(execFileAsync(bin, ['bench', 'serve', '--base-url',
    `http://127.0.0.1:${port}`, '--num-requests', '3', '--out', out]));
  const r = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(r.failed, 3);
  assert.equal(r.completed, 0);
});

// Against `mixserve serve` itself, once the binary has it.
const hasServe = (() => {
  try {
    return /\bserve\b/.test(execFileSync(bin, ['--help'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
})();

test('bench serve against mixserve serve on the tiny model', { skip: !hasServe &&
  'this build has no `mixserve serve` yet' }, async () => {
  const probe = net.createServer();
  await new Promise((ok) => probe.listen(0, '127.0.0.1', ok));
  const port = probe.address().port;
  await new Promise((ok) => probe.close(ok));
  const srv = spawn(bin, ['serve', '--model', modelDir, '--device', 'cpu', '--host', '127.0.0.1',
    '--port', String(port)], { stdio: 'ignore' });
  try {
    let up = false;
    for (let i = 0; i < 300 && !up; ++i) {
      await new Promise((ok) => setTimeout(ok, 100));
      up = await new Promise((ok) => http.get(`http://127.0.0.1:${port}/health`,
        (res) => { res.resume(); ok(res.statusCode === 200); }).on('error', () => ok(false)));
    }
    assert.ok(up, 'mixserve serve did not answer /health');
    const out = path.join(workdir, 'mixserve-serve.json');
    await execFileAsync(bin, ['bench', 'serve', '--base-url', `http://127.0.0.1:${port}`,
      '--request-rate', '20,inf', '--num-requests', '8', '--input-len', '12', '--output-len', '6',
      '--out', out]);
    const r = JSON.parse(fs.readFileSync(out, 'utf8'));
    for (const run of r.runs) {
      checkRun(run, { requests: 8, inputTokens: 8 * 12, outputTokens: 8 * 6, streamed: 'text' });
    }
  } finally {
    srv.kill();
  }
});
