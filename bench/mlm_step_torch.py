#!/usr/bin/env python3
"""PyTorch peer of `pretext bench step --model transformer`: one masked-language-model
training step of the same BERT-style encoder (fp32, CPU), timed after warm-up.

Token and learned position embeddings, a pre-LN transformer encoder (GELU feed-forward,
dropout 0.1), a final LayerNorm; 15 % of the positions are gathered and go through the MLM head
(dense, GELU, LayerNorm, vocabulary), cross-entropy, AdamW. Prints one JSON line on stdout.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import resident
import torch_precision


class Bert(nn.Module):
    def __init__(self, vocab, max_len, hidden, layers, heads, ff, dropout):
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(max_len, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.head_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids, padding, positions):
        b, n = ids.shape
        pos = torch.arange(n, device=ids.device).unsqueeze(0).expand(b, n)
        x = self.tokens(ids) + self.positions(pos)
        h = self.norm(self.encoder(x, src_key_padding_mask=padding))
        picked = h.reshape(b * n, -1)[positions]
        return self.out(self.head_norm(F.gelu(self.dense(picked))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="transformer")
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    torch_precision.add_argument(p)
    a = p.parse_args()
    dev = torch.device(a.device)
    torch_precision.setup(dev)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h = a.hidden
    model = Bert(a.vocab, a.seq_len, h, a.layers, max(h // 64, 1), 4 * h, 0.1).to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    b, n = a.batch_size, a.seq_len
    ids = torch.randint(5, a.vocab, (b, n), device=dev)
    padding = torch.zeros(b, n, dtype=torch.bool, device=dev)
    selected = max(round(n * 0.15), 1)
    positions = torch.tensor(
        [row * n + 1 + k * (n - 1) // selected for row in range(b) for k in range(selected)],
        device=dev,
    )
    targets = torch.randint(5, a.vocab, (len(positions),), device=dev)

    def run(steps):
        for _ in range(steps):
            with torch_precision.autocast(dev, a.precision):
                logits = model(ids, padding, positions)
                loss = F.cross_entropy(logits, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # As the Rust step: read the loss and the hits back.
            loss.item()
            (logits.detach().argmax(1) == targets).sum().item()

    before = resident.current_mib()
    run(a.warmup)
    t = time.perf_counter()
    run(a.steps)
    seconds = time.perf_counter() - t
    print(json.dumps({
        "impl": "pytorch",
        "model": "transformer-mlm/l%d/h%d/len%d" % (a.layers, h, n),
        "width": h,
        "batch": b,
        "threads": a.threads,
        "device": a.device,
        "precision": a.precision,
        "steps": a.steps,
        "seconds": seconds,
        "samples_per_s": a.steps * b / seconds,
        "torch": torch.__version__,
        **resident.fields(before),
    }))


if __name__ == "__main__":
    main()
