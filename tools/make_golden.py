#!/usr/bin/env python3
"""Golden references from Hugging Face transformers for mixserve's tests.

Runs where PyTorch and transformers are installed (the GPU machine has both; the references are
computed on its CPU in float32, the most precise path). For every reference model it:
  1. builds the checkpoint with `mixserve make-model` (deterministic, so only this script's small
     outputs are committed, never the weights);
  2. loads it with transformers' MixtralForCausalLM / MistralForCausalLM in float32 and eager
     attention, tokenizes the prompts with the model folder's tokenizer (AutoTokenizer);
  3. runs greedy decoding step by step with a full forward pass each step (no KV-cache shortcuts
     in the reference) and records the prompt ids, the greedy ids and the top-K log-probabilities
     of every step.
It also encodes/decodes the tokenizer corpus with HF `tokenizers` (through transformers' fast
tokenizer) and renders the chat-template conversations with `apply_chat_template`.

Usage:
  python3 tools/make_golden.py --bin build/mixserve --out tests/golden [--steps 24] [--top 5]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

# name -> (preset, shards, make-model extra args)
MODELS = {
    "tiny": ("tiny", 1),              # Mixtral, 4 experts, GQA 4, head_dim 32
    "tiny-e8": ("tiny-e8", 1),        # 8 experts, GQA 2, head_dim 16
    "tiny-d128": ("tiny-d128", 1),    # 8 experts, GQA 2, head_dim 128 (!= hidden/heads)
    "tiny-sharded": ("tiny", 3),      # the tiny model written as 3 shards with an index
    "tiny-dense": ("tiny-dense", 1),  # Mistral layout, one dense MLP per layer
}

LONG_PROMPT = (
    "In the beginning of the twentieth century, the small harbour town lived from fishing and "
    "from the ferries that crossed the strait twice a day. The lighthouse keeper kept a diary "
    "in which he wrote down the weather, the ships that passed, the names of the sailors who "
    "came ashore and the prices of bread, salt and lamp oil. "
) * 4 + "Numbers: 3.14159, 2,718, 1e-9; code: for (int i = 0; i < n; ++i) { sum += a[i]; }"

PROMPTS = [
    "The capital of France is",
    "Hello",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Ünïcödé façade — 東京 🙂 tokens",
    LONG_PROMPT,
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def greedy_reference(model, torch, prompt_ids, steps, top):
    ids = list(prompt_ids)
    out_ids, out_top = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids], dtype=torch.long)).logits[0, -1].double()
            logp = torch.log_softmax(logits, dim=-1)
            values, indices = torch.topk(logp, top)
            next_id = int(torch.argmax(logits).item())
            out_top.append([{"id": int(i), "logprob": float(v)} for v, i in zip(values, indices)])
            out_ids.append(next_id)
            ids.append(next_id)
    return out_ids, out_top


def completion_text(tok, prompt_ids, gen_ids):
    full = tok.decode(prompt_ids + gen_ids, skip_special_tokens=True)
    prefix = tok.decode(prompt_ids, skip_special_tokens=True)
    assert full.startswith(prefix)
    return full[len(prefix):]


def make_model(binary, preset, shards, out_dir):
    cmd = [binary, "make-model", "--preset", preset, "--out", out_dir]
    if shards > 1:
        cmd += ["--shards", str(shards)]
    subprocess.run(cmd, check=True)


def model_references(args, torch, transformers, workdir):
    for name in args.models:
        preset, shards = MODELS[name]
        model_dir = os.path.join(workdir, name)
        make_model(args.bin, preset, shards, model_dir)
        config = json.load(open(os.path.join(model_dir, "config.json")))
        cls = (transformers.MixtralForCausalLM if config["model_type"] == "mixtral"
               else transformers.MistralForCausalLM)
        model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        cases = []
        for prompt in PROMPTS:
            prompt_ids = tok(prompt)["input_ids"]
            gen_ids, top = greedy_reference(model, torch, prompt_ids, args.steps, args.top)
            cases.append({
                "prompt": prompt,
                "prompt_ids": prompt_ids,
                "token_ids": gen_ids,
                # The completion's text as an OpenAI server returns it (vLLM's rule): the decode
                # of prompt + completion minus the decode of the prompt, so the first token's
                # leading space is kept.
                "text": completion_text(tok, prompt_ids, gen_ids),
                "top_logprobs": top,
            })
            log(f"{name}: {len(prompt_ids)} prompt tokens -> {gen_ids[:8]}...")
        result = {
            "model": {"preset": preset, "shards": shards, "seed": 0, "config": config},
            "reference": reference_info(torch, transformers),
            "steps": args.steps,
            "top": args.top,
            "cases": cases,
        }
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")


def tokenizer_references(args, transformers):
    corpus_path = os.path.join(args.repo, "tests/data/tokenizer_corpus.json")
    if not os.path.exists(corpus_path):
        log("no tokenizer corpus; skipping tokenizer references")
        return
    tok = transformers.AutoTokenizer.from_pretrained(os.path.join(args.repo, "assets/tokenizer/mixtral"))
    corpus = json.load(open(corpus_path))
    texts = corpus["texts"] if isinstance(corpus, dict) else corpus
    entries = []
    for item in texts:
        text = item["text"] if isinstance(item, dict) else item
        ids = tok(text)["input_ids"]
        entries.append({
            "text": text,
            "ids": ids,
            "ids_no_special": tok(text, add_special_tokens=False)["input_ids"],
            "decoded": tok.decode(ids),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    with open(os.path.join(args.out, "tokenizer_hf.json"), "w") as f:
        json.dump({"reference": reference_info(None, transformers), "entries": entries}, f,
                  ensure_ascii=False)
        f.write("\n")
    log(f"tokenizer: {len(entries)} corpus entries")


def chat_template_references(args, transformers):
    """Every template under tests/data/chat_templates × every conversation, rendered by
    transformers' apply_chat_template (Python Jinja2, as transformers renders it)."""
    tdir = os.path.join(args.repo, "tests/data/chat_templates")
    conv_path = os.path.join(tdir, "conversations.json")
    if not os.path.exists(conv_path):
        log("no chat-template conversations; skipping")
        return
    tok = transformers.AutoTokenizer.from_pretrained(os.path.join(args.repo, "assets/tokenizer/mixtral"))
    data = json.load(open(conv_path))
    out = []
    for name in sorted(f for f in os.listdir(tdir) if f.endswith(".jinja")):
        template = open(os.path.join(tdir, name)).read()
        for key, messages in data["conversations"].items():
            for gen in (False, True):
                entry = {"template": name, "conversation": key, "add_generation_prompt": gen}
                try:
                    entry["text"] = tok.apply_chat_template(messages, chat_template=template,
                                                            tokenize=False,
                                                            add_generation_prompt=gen)
                except Exception as e:  # the template's raise_exception, or a Jinja error
                    entry["error"] = f"{type(e).__name__}: {e}"
                out.append(entry)
    with open(os.path.join(args.out, "chat_template_hf.json"), "w") as f:
        json.dump({"reference": reference_info(None, transformers), "renders": out}, f,
                  indent=1, ensure_ascii=False)
        f.write("\n")
    log(f"chat templates: {len(out)} renders")


def reference_info(torch, transformers):
    info = {"transformers": transformers.__version__, "python": platform.python_version()}
    if torch is not None:
        info["torch"] = torch.__version__
        info["dtype"] = "float32"
        info["device"] = "cpu"
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", required=True, help="the mixserve binary (for make-model)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch
    import transformers
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer_references(args, transformers)
        chat_template_references(args, transformers)
        model_references(args, torch, transformers, workdir)


if __name__ == "__main__":
    main()
