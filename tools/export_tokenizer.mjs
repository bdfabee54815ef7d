#!/usr/bin/env node
// Writes assets/tokenizer/mixtral/{tokenizer.json,tokenizer_config.json}: the Mixtral-8x7B
// (Mistral / Llama-2 family, 32,000-token SentencePiece BPE) tokenizer in the exact layout of
// Hugging Face's mistralai/Mixtral-8x7B-v0.1 tokenizer.json, and the tokenizer_config.json of
// Mixtral-8x7B-Instruct-v0.1 (with its chat template).
//
// The vocabulary and merges come from the npm package mistral-tokenizer-js, which ships them as
// two base64 constants in mistral-tokenizer.js:
//   vocab_base64:  UTF-8 text, one token per line; line number = token id.
//   merges_binary: little-endian uint16 token ids, two per merge (left, right), in merge
//                  priority order (first = applied first).
// We read the constants from the source text (they are not exported) and decode them ourselves.
// The output is deterministic: same package version -> byte-identical files.
//
// Usage: node tools/export_tokenizer.mjs [--out DIR]   (default assets/tokenizer/mixtral)
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outFlag = process.argv.indexOf('--out');
const outDir = outFlag >= 0 ? path.resolve(process.argv[outFlag + 1])
                            : path.join(repoRoot, 'assets/tokenizer/mixtral');

function fail(msg) {
  console.error(`export_tokenizer: ${msg}`);
  process.exit(1);
}

function packageSource() {
  const require = createRequire(path.join(repoRoot, 'package.json'));
  let pkgJson;
  try {
    pkgJson = require.resolve('mistral-tokenizer-js/package.json');
  } catch {
    fail('npm package mistral-tokenizer-js not found; run `npm ci` in the repository root');
  }
  return fs.readFileSync(path.join(path.dirname(pkgJson), 'mistral-tokenizer.js'), 'utf8');
}

function stringConstant(src, name) {
  const m = src.match(new RegExp(`const ${name} = "([A-Za-z0-9+/=]+)"`));
  if (!m) fail(`mistral-tokenizer.js: constant ${name} not found (package layout changed?)`);
  return Buffer.from(m[1], 'base64');
}

function decodeVocab(bytes) {
  const pieces = bytes.toString('utf8').split('\n');
  if (pieces.length !== 32000) fail(`vocabulary has ${pieces.length} entries, expected 32000`);
  if (new Set(pieces).size !== pieces.length) fail('vocabulary has duplicate pieces');
  return pieces;
}

function decodeMerges(bytes, pieces) {
  if (bytes.length % 4 !== 0) fail(`merges_binary length ${bytes.length} is not a multiple of 4`);
  const index = new Map(pieces.map((p, i) => [p, i]));
  const merges = [];
  const seen = new Set();
  for (let off = 0; off < bytes.length; off += 4) {
    const left = pieces[bytes.readUInt16LE(off)];
    const right = pieces[bytes.readUInt16LE(off + 2)];
    if (left === undefined || right === undefined) fail(`merge ${off / 4}: token id out of range`);
    if (!index.has(left + right)) fail(`merge ${off / 4}: "${left}${right}" is not in the vocab`);
    const merge = `${left} ${right}`;
    if (seen.has(merge)) fail(`merge ${off / 4}: duplicate "${merge}"`);
    seen.add(merge);
    merges.push(merge);
  }
  return merges;
}

function specialToken(id, content) {
  return {id, content, single_word: false, lstrip: false, rstrip: false, normalized: false,
          special: true};
}

function tokenizerJson(pieces, merges) {
  const vocab = {};
  pieces.forEach((p, i) => { vocab[p] = i; });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [specialToken(0, '<unk>'), specialToken(1, '<s>'), specialToken(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        {type: 'Prepend', prepend: '▁'},
        {type: 'Replace', pattern: {String: ' '}, content: '▁'},
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{SpecialToken: {id: '<s>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}}],
      pair: [
        {SpecialToken: {id: '<s>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}},
        {SpecialToken: {id: '<s>', type_id: 1}}, {Sequence: {id: 'B', type_id: 1}},
      ],
      special_tokens: {'<s>': {id: '<s>', ids: [1], tokens: ['<s>']}},
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        {type: 'Replace', pattern: {String: '▁'}, content: ' '},
        {type: 'ByteFallback'},
        {type: 'Fuse'},
        {type: 'Strip', content: ' ', start: 1, stop: 0},
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges,
    },
  };
}

// mistralai/Mixtral-8x7B-Instruct-v0.1's template (the revision with the optional system
// message, shared with Mistral-7B-Instruct-v0.2). '\n\n' inside it is a Jinja escape, so the
// backslashes are literal here.
const CHAT_TEMPLATE = [
  "{%- if messages[0]['role'] == 'system' %}",
  "    {%- set system_message = messages[0]['content'] %}",
  "    {%- set loop_messages = messages[1:] %}",
  '{%- else %}',
  '    {%- set loop_messages = messages %}',
  '{%- endif %}',
  '',
  '{{- bos_token }}',
  '{%- for message in loop_messages %}',
  "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}",
  "        {{- raise_exception('After the optional system message, conversation roles must " +
      "alternate user/assistant/user/assistant/...') }}",
  '    {%- endif %}',
  "    {%- if message['role'] == 'user' %}",
  '        {%- if loop.first and system_message is defined %}',
  String.raw`            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}`,
  '        {%- else %}',
  "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}",
  '        {%- endif %}',
  "    {%- elif message['role'] == 'assistant' %}",
  "        {{- ' ' + message['content'] + eos_token}}",
  '    {%- else %}',
  "        {{- raise_exception('Only user and assistant roles are supported, with the exception " +
      "of an initial optional system message!') }}",
  '    {%- endif %}',
  '{%- endfor %}',
  '',
].join('\n');

// transformers writes 1e30 as the integer below; JSON.stringify would write 1e+30.
const MAX_LENGTH_SENTINEL = '__MODEL_MAX_LENGTH__';

function tokenizerConfig() {
  const decoder = {};
  for (const [id, content] of [[0, '<unk>'], [1, '<s>'], [2, '</s>']]) {
    decoder[String(id)] = {content, lstrip: false, normalized: false, rstrip: false,
                           single_word: false, special: true};
  }
  // Keys sorted, as transformers' save_pretrained writes them.
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoder,
    additional_special_tokens: [],
    bos_token: '<s>',
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    legacy: true,
    model_max_length: MAX_LENGTH_SENTINEL,
    pad_token: null,
    sp_model_kwargs: {},
    spaces_between_special_tokens: false,
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
    use_default_system_prompt: false,
  };
}

const src = packageSource();
const pieces = decodeVocab(stringConstant(src, 'vocab_base64'));
const merges = decodeMerges(stringConstant(src, 'merges_binary'), pieces);
if (merges.length !== 58980) fail(`got ${merges.length} merges, expected 58980`);

fs.mkdirSync(outDir, {recursive: true});
fs.writeFileSync(path.join(outDir, 'tokenizer.json'),
                 JSON.stringify(tokenizerJson(pieces, merges), null, 2) + '\n');
fs.writeFileSync(path.join(outDir, 'tokenizer_config.json'),
                 JSON.stringify(tokenizerConfig(), null, 2)
                     .replace(`"${MAX_LENGTH_SENTINEL}"`, '1000000000000000019884624838656') + '\n');
console.log(`wrote ${outDir}/tokenizer.json (${pieces.length} tokens, ${merges.length} merges) ` +
            'and tokenizer_config.json');
