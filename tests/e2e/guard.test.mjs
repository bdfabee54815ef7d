// Authentication, overload, disconnects, and shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './server_harness.mjs';

test('--api-key: a missing or wrong key is AuthenticationError, the right one works', async () => {
  const server = await startServer(['--api-key', 'sesame']);
  try {
    await assert.rejects(server.client({ apiKey: 'wrong' }).models.list(),
      (e) => e instanceof OpenAI.AuthenticationError);
    const r = await fetch(`${server.base}/v1/models`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.type, 'authentication_error');
    const ok = await server.client({ apiKey: 'sesame' }).models.list();
    assert.equal(ok.data[0].id, 'tiny');
    assert.equal((await fetch(`${server.base}/health`)).status, 200, '/health needs no key');
  } finally {
    await server.stop();
  }
});

test('a full queue answers 429 with Retry-After (RateLimitError)', async () => {
  const server = await startServer(['--max-num-seqs', '1', '--max-queued-requests', '1']);
  try {
    const client = server.client();
    const results = await Promise.allSettled(Array.from({ length: 4 }, () =>
      client.completions.create({ model: 'tiny', prompt: 'Go', max_tokens: 60,
        ignore_eos: true })));
    const limited = results.filter((r) => r.status === 'rejected');
    assert.ok(results.some((r) => r.status === 'fulfilled'));
    assert.ok(limited.length >= 1);
    for (const r of limited) {
      assert.ok(r.reason instanceof OpenAI.RateLimitError, String(r.reason));
      const h = r.reason.headers;
      assert.equal(typeof h.get === 'function' ? h.get('retry-after') : h['retry-after'], '1');
    }
  } finally {
    await server.stop();
  }
});

async function metric(base, name) {
  const m = await (await fetch(`${base}/metrics`)).text();
  const line = m.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('a client that disconnects cancels its request', async () => {
  const server = await startServer();
  try {
    const ac = new AbortController();
    const stream = await server.client().completions.create({ model: 'tiny', prompt: 'Go',
      max_tokens: 3000, ignore_eos: true, stream: true }, { signal: ac.signal });
    let n = 0;
    try {
      for await (const _ of stream) {
        if (++n === 5) ac.abort();
      }
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
    }
    assert.ok(n >= 5 && n < 100, `read ${n} chunks`);
    // The engine stops within a step: nothing running, generation stops growing.
    let running = 1;
    for (let i = 0; i < 50 && running !== 0; ++i) {
      await new Promise((r) => setTimeout(r, 100));
      running = await metric(server.base, 'mixserve:num_requests_running');
    }
    assert.equal(running, 0);
    assert.equal(await metric(server.base, 'mixserve:gpu_cache_usage_perc'), 0);
    const gen = await metric(server.base, 'mixserve:generation_tokens_total');
    assert.ok(gen < 3000, `generated ${gen}`);
  } finally {
    await server.stop();
  }
});

test('SIGTERM lets a running request finish, then exits 0', async () => {
  const server = await startServer(['--shutdown-grace-seconds', '30']);
  const stream = await server.client().completions.create({ model: 'tiny', prompt: 'Go',
    max_tokens: 100, ignore_eos: true, stream: true });
  let text = '';
  let finish = null;
  let signalled = false;
  for await (const chunk of stream) {
    if (!signalled) {
      server.proc.kill('SIGTERM');
      signalled = true;
    }
    text += chunk.choices[0]?.text ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'length');
  const { code } = await server.exited;
  assert.equal(code, 0);
});
