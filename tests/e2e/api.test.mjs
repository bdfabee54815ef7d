// The OpenAI API end to end, with the official openai SDK as the client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './server_harness.mjs';

let server;
let client;
before(async () => {
  server = await startServer();
  client = server.client();
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, 'SIGTERM exits 0');
});

const greedy = { model: 'tiny', temperature: 0, max_tokens: 12 };

test('GET /v1/models lists the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['tiny']);
});

test('completions: text, usage, finish_reason', async () => {
  const r = await client.completions.create({ ...greedy, prompt: 'The capital of France is' });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.usage.completion_tokens, 12);
  assert.ok(r.usage.prompt_tokens >= 6);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 12);
});

test('completions: streamed text equals non-streamed text (greedy)', async () => {
  const req = { ...greedy, prompt: 'Once upon a time' };
  const full = await client.completions.create(req);
  const stream = await client.completions.create({ ...req, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  const ids = new Set();
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, full.choices[0].text);
  assert.equal(finish, 'length');
  assert.equal(ids.size, 1, 'every chunk shares one id');
  assert.deepEqual(usage, full.usage);
});

test('chat: non-streamed and streamed agree; first delta has the role', async () => {
  const req = { ...greedy, messages: [{ role: 'user', content: 'Say hello' }] };
  const full = await client.chat.completions.create(req);
  assert.equal(full.object, 'chat.completion');
  assert.equal(full.choices[0].message.role, 'assistant');
  const stream = await client.chat.completions.create({ ...req, stream: true });
  let text = '';
  let first = true;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const c of chunk.choices) {
      if (first) assert.equal(c.delta.role, 'assistant');
      first = false;
      text += c.delta.content ?? '';
    }
  }
  assert.equal(text, full.choices[0].message.content);
});

test('n > 1 gives n choices; a seed reproduces sampled output', async () => {
  const req = { model: 'tiny', prompt: 'Hello', max_tokens: 8, n: 3, temperature: 1.0, seed: 42 };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  assert.equal(a.usage.completion_tokens, 24);
  const c = await client.completions.create({ ...req, seed: 43 });
  assert.notDeepEqual(a.choices.map((x) => x.text), c.choices.map((x) => x.text));
});

test('stop strings cut the text and finish with stop', async () => {
  const base = await client.completions.create({ ...greedy, prompt: 'Numbers:' });
  const text = base.choices[0].text;
  const stop = text.slice(3, 6);
  const r = await client.completions.create({ ...greedy, prompt: 'Numbers:', stop: [stop] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, text.slice(0, text.indexOf(stop)));
});

test('token-id prompts, echo and legacy logprobs', async () => {
  const tok = await (await fetch(`${server.base}/tokenize`, { method: 'POST',
    body: JSON.stringify({ model: 'tiny', prompt: 'Hello world' }) })).json();
  assert.equal(tok.count, tok.tokens.length);
  const byText = await client.completions.create({ ...greedy, prompt: 'Hello world' });
  const byIds = await client.completions.create({ ...greedy, prompt: tok.tokens });
  assert.equal(byIds.choices[0].text, byText.choices[0].text);
  const r = await client.completions.create({ ...greedy, max_tokens: 4, prompt: 'Hello world',
    logprobs: 3, echo: true });
  assert.ok(r.choices[0].text.startsWith('Hello world'));
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, tok.count + 4);
  assert.equal(lp.token_logprobs[tok.count - 1], null, 'prompt tokens have no logprob');
  for (let i = tok.count; i < lp.tokens.length; ++i) {
    assert.ok(lp.token_logprobs[i] <= 0);
    assert.equal(Object.keys(lp.top_logprobs[i]).length, 3);
  }
  const det = await (await fetch(`${server.base}/detokenize`, { method: 'POST',
    body: JSON.stringify({ model: 'tiny', tokens: tok.tokens }) })).json();
  assert.match(det.prompt, /Hello world$/);
});

test('chat logprobs: content entries with top_logprobs', async () => {
  const r = await client.chat.completions.create({ ...greedy, max_tokens: 3,
    messages: [{ role: 'user', content: 'Hi' }], logprobs: true, top_logprobs: 2 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, 3);
  for (const e of content) {
    assert.equal(e.top_logprobs.length, 2);
    assert.equal(e.top_logprobs[0].logprob, e.logprob, 'greedy picks the most likely token');
    assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')]);
  }
});

test('outputs do not change with batch composition', async () => {
  const prompts = ['The sky is', 'My favourite food', 'In 1999', 'Rust or C++?'];
  const alone = [];
  for (const p of prompts) {
    alone.push((await client.completions.create({ ...greedy, prompt: p })).choices[0].text);
  }
  const together = await Promise.all(prompts.flatMap((p) => [0, 1].map(() =>
    client.completions.create({ ...greedy, prompt: p }))));
  together.forEach((r, i) => assert.equal(r.choices[0].text, alone[Math.floor(i / 2)]));
  // A multi-prompt request answers each prompt as it is answered alone.
  const multi = await client.completions.create({ ...greedy, prompt: prompts });
  assert.deepEqual(multi.choices.map((c) => c.text), alone);
});

test('each error status arrives as the SDK error class', async () => {
  await assert.rejects(client.completions.create({ ...greedy, prompt: 'x', temperature: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(client.completions.create({ ...greedy, prompt: 'x', max_tokens: 1e6 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
  await assert.rejects(client.completions.create({ ...greedy, model: 'gpt-4', prompt: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(client.chat.completions.create({ ...greedy, messages: 'hi' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages');
  await assert.rejects(client.get('/nope'), (e) => e instanceof OpenAI.NotFoundError);
});

test('/health, /version and /metrics', async () => {
  assert.equal((await fetch(`${server.base}/health`)).status, 200);
  assert.match((await (await fetch(`${server.base}/version`)).json()).version, /^\d+\.\d+\.\d+$/);
  const m = await (await fetch(`${server.base}/metrics`)).text();
  for (const name of ['mixserve:time_to_first_token_seconds_bucket',
    'mixserve:time_per_output_token_seconds_count', 'mixserve:e2e_request_latency_seconds_sum',
    'mixserve:request_queue_time_seconds_count', 'mixserve:num_requests_running',
    'mixserve:num_requests_waiting', 'mixserve:gpu_cache_usage_perc',
    'mixserve:prompt_tokens_total', 'mixserve:generation_tokens_total',
    'mixserve:num_preemptions_total', 'mixserve:prefix_cache_hits_total',
    'mixserve:request_success_total{finished_reason="length"',
    'mixserve:request_errors_total{code="400"']) {
    assert.ok(m.includes(name), `metric ${name} missing`);
  }
  const gen = Number(m.match(/^mixserve:generation_tokens_total\{[^}]*\} (\S+)$/m)[1]);
  assert.ok(gen > 50);
});
