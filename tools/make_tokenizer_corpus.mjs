#!/usr/bin/env node
// Writes tests/data/tokenizer_corpus.json: a list of strings that exercise the tokenizer
// (spaces, tabs, newlines, accents, CJK, emoji with ZWJ and skin tones, digits, code, URLs,
// characters that need byte fallback, literal special-token text, the empty string) and, as
// its last entry, ~100 KB of English prose for the speed benchmark.
//
// The prose is made deterministically from the documentation prose shipped in node_modules
// (the openai SDK's API reference comments and the packages' READMEs and licences): paragraphs
// are extracted, filtered to plain prose, deduplicated, and shuffled with a seeded PRNG.
// Same package versions (package-lock.json) -> byte-identical output.
//
// Usage: node tools/make_tokenizer_corpus.mjs [--out FILE]
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outFlag = process.argv.indexOf('--out');
const outFile = outFlag >= 0 ? path.resolve(process.argv[outFlag + 1])
                             : path.join(repoRoot, 'tests/data/tokenizer_corpus.json');
const PROSE_BYTES = 100_000;

const require = createRequire(path.join(repoRoot, 'package.json'));
// Not require.resolve(`${name}/package.json`): some packages (openai) do not export it.
function packageDir(name) {
  for (const dir of require.resolve.paths(name) ?? []) {
    if (fs.existsSync(path.join(dir, name, 'package.json'))) return path.join(dir, name);
  }
  console.error(`make_tokenizer_corpus: npm package ${name} not found; run \`npm ci\``);
  process.exit(1);
}

function filesUnder(dir, ext) {
  const out = [];
  for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p, ext));
    else if (entry.name.endsWith(ext)) out.push(p);
  }
  return out.sort();
}

// Plain English: letters, digits and ordinary punctuation only, a full sentence or more.
function isProse(p) {
  return p.length >= 80 && /^[A-Z]/.test(p) && /[.!?]$/.test(p) &&
         /^[A-Za-z0-9 ,.;:'"()?!%\-]+$/.test(p) && p.split(' ').length >= 12;
}

function jsdocParagraphs(source) {
  const paras = [];
  for (const block of source.match(/\/\*\*[\s\S]*?\*\//g) ?? []) {
    const lines = block.replace(/^\/\*\*|\*\/$/g, '').split('\n')
                      .map((l) => l.replace(/^\s*\* ?/, '').trim());
    let cur = [];
    for (const line of [...lines, '']) {
      if (line === '' || line.startsWith('@')) {
        if (cur.length) paras.push(cur.join(' '));
        cur = [];
      } else {
        cur.push(line);
      }
    }
  }
  return paras;
}

function markdownParagraphs(text) {
  return text.replace(/```[\s\S]*?```/g, '').split(/\n\s*\n/)
             .map((p) => p.replace(/\s*\n\s*/g, ' ').trim());
}

function collectProse() {
  const paras = [];
  const openai = packageDir('openai');
  for (const f of filesUnder(path.join(openai, 'src/resources'), '.ts')) {
    paras.push(...jsdocParagraphs(fs.readFileSync(f, 'utf8')));
  }
  for (const pkg of ['openai', 'mistral-tokenizer-js', '@huggingface/jinja']) {
    const dir = packageDir(pkg);
    for (const name of ['README.md', 'LICENSE', 'LICENSE.md']) {
      const p = path.join(dir, name);
      if (fs.existsSync(p)) paras.push(...markdownParagraphs(fs.readFileSync(p, 'utf8')));
    }
  }
  return [...new Set(paras.filter(isProse))];
}

// mulberry32: a small seeded PRNG, so the shuffle is the same everywhere.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(items, rand) {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; --i) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function longProse() {
  const paras = collectProse();
  if (paras.length < 50) {
    console.error(`make_tokenizer_corpus: only ${paras.length} prose paragraphs found`);
    process.exit(1);
  }
  const rand = mulberry32(20240611);
  const out = [];
  let bytes = 0;
  while (bytes < PROSE_BYTES) {  // repeat reshuffled passes if one pass is too short
    for (const p of shuffled(paras, rand)) {
      out.push(p);
      bytes += Buffer.byteLength(p) + 2;
      if (bytes >= PROSE_BYTES) break;
    }
  }
  return out.join('\n\n') + '\n';
}

const SHORT = [
  '',
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  ' leading space',
  'trailing space ',
  '   three leading spaces and two trailing  ',
  ' ',
  '     ',
  'a  b   c    d     e',
  '\ttab\tseparated\t\tvalues\t',
  'line one\nline two\n\nline four\n',
  'windows\r\nline\r\nendings',
  '\n\n\n',
  ' \n \n ',
  'Crème brûlée, naïve façade, São Paulo, Ærøskøbing, Zürich: déjà vu.',
  'e\u0301 is e followed by a combining acute accent; \u00e9 is precomposed.',
  'Ünïcödé ẞ ℌ ℵ ∑ ∫ √2 ≈ 1.414 ± 0.001 °C €100 £5 ¥300',
  '日本語のテキストです。中文文本，简体和繁體。한국어 텍스트입니다.',
  'Русский текст и ελληνικά γράμματα, עברית ו العربية.',
  'Family 👨‍👩‍👧‍👦, thumbs 👍🏽👍🏿, flag 🏳️‍🌈, coder 🧑🏿‍💻, heart ❤️‍🔥.',
  '🦙🪿🫠 emoji that need byte fallback',
  'Rare CJK: 𠜎𠜱𠝹𠱓𠱸 and Ꙋ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.',
  '3.14159 2718281828 1,000,000 0x7FFF 1e-9 2024-01-01T12:34:56Z',
  '1234567890123456789012345678901234567890',
  'def square(x):\n    return x ** 2  # comment\n\nprint([square(i) for i in range(10)])\n',
  'for (int i = 0; i < n; ++i) {\n\ta[i] = b[i] + c[i];\n}',
  '{"key": [1, 2, 3], "nested": {"a": null, "b": true}, "s": "x\\ny"}',
  'https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/tokenizer.json?x=1&y=2#frag',
  'mailto:someone@example.com and ftp://files.example.org/pub/',
  '<s>',
  '</s>',
  '<unk>',
  '<s>Hello</s>',
  'before <s> after </s> end',
  'a<s>b',
  '<<s>> and <s and s> and </ s>',
  '[INST] What is the capital of France? [/INST]',
  'already▁has▁metaspace▁characters',
  'replacement character \uFFFD in text',
  'control\u0001chars\u007f and nul\u0000byte',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '!!!???...,,,;;;:::---___===+++',
  // Long runs that stay one BPE segment (more than 48 symbols: the heap path).
  ' '.repeat(100) + 'x',
  'ab'.repeat(60),
  'ーー'.repeat(30) + 'テストテストテスト',
];

fs.mkdirSync(path.dirname(outFile), {recursive: true});
const corpus = [...SHORT, longProse()];
fs.writeFileSync(outFile, JSON.stringify(corpus, null, 1) + '\n');
console.log(`wrote ${outFile}: ${corpus.length} entries, long text ` +
            `${Buffer.byteLength(corpus.at(-1))} bytes`);
