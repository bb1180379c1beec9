"""Check `pretext export` against PyTorch, torchvision, timm and onnxruntime on real images.

    /work/venv-torch/bin/python bench/interop_check.py --pretext target/release/pretext \
        --run RUN_DIR --images DIR [--n 512] --work DIR [--threads 1] [--tol 1e-3]

1. Exports the run with `pretext export --run RUN --to F --out WORK/export/...` for F = pytorch
   (always), torchvision (a ResNet-18/50 with the imagenet stem, width 64, 3 channels; any other
   encoder must be refused), timm (a ViT or such a ResNet; others must be refused) and onnx.
2. Embeds DIR with `pretext embed --run RUN --data DIR --out WORK/embed`, which writes
   `{train,test}_features.npy` and `files.csv` (split,index,path,label).
3. Reads the first --n images of the test split named in files.csv (the train split if there is
   no test split) with PIL, as the export's channel_order, to float32 pixel/255 NCHW; the files
   must already be the export's input_size (nothing is resized).
4. Computes their features with the module of bench/pretext_models.py (load_export,
   strict=True), torchvision's resnet18/50 (fc = Identity, strict=True), timm.create_model
   (strict=True) and onnxruntime (input `images`: pixel/255, the normalisation is in the graph;
   output `features`), in batches of 64, and compares each with pretext embed's rows.
5. Prints a markdown table (export, runtime, max abs difference) and writes WORK/interop.json.

Exit status 1 when an export that should work fails, one that should be refused is written, or
a difference exceeds --tol x max(1, max |feature|).
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretext_models import VIT_NAMES, load_export, normalise, read_metadata  # noqa: E402

BATCH = 64
EXTENSION = {"pytorch": "safetensors", "torchvision": "safetensors", "timm": "safetensors",
             "onnx": "onnx"}


def torchvision_shaped(meta):
    return (meta["arch"] in ("resnet18", "resnet50") and meta.get("stem") == "imagenet"
            and meta.get("width") == 64 and meta.get("in_channels") == 3)


def expected(fmt, meta):
    """Whether `pretext export --to fmt` should accept this encoder."""
    if fmt == "torchvision":
        return torchvision_shaped(meta)
    if fmt == "timm":
        return meta["arch"] in VIT_NAMES or torchvision_shaped(meta)
    return True


def run(cmd, log):
    print("$", " ".join(map(str, cmd)), file=sys.stderr)
    t = time.time()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    log.append({"cmd": [str(c) for c in cmd], "rc": p.returncode, "seconds": time.time() - t,
                "stdout": p.stdout[-2000:], "stderr": p.stderr[-2000:]})
    return p


def export(args, fmt, out, log):
    p = run([args.pretext, "export", "--run", args.run, "--to", fmt, "--out", out], log)
    message = (p.stderr.strip().splitlines() or [""])[-1]
    return p.returncode == 0 and out.exists(), message


def rows_to_check(embed_dir, n):
    """(split, [(index, path)]) of the first n embedded test images (train without a test split)."""
    with open(embed_dir / "files.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"split", "index", "path", "label"} - set(rows[0] if rows else {})
    assert not missing, f"files.csv lacks the columns {sorted(missing)}"
    split = "test" if any(r["split"] == "test" for r in rows) else "train"
    chosen = sorted((int(r["index"]), r["path"]) for r in rows if r["split"] == split)
    return split, chosen[:n]


def resolve(path, images):
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return images / p


def read_images(paths, meta):
    from PIL import Image

    mode = "L" if meta.get("channel_order") == "L" else "RGB"
    size = meta.get("input_size")
    out = []
    for path in paths:
        with Image.open(path) as img:
            if size is None:  # an export without input_size: the first image's, for them all
                size = img.size[0]
            assert img.size == (size, size), f"{path}: {img.size}, the export wants {size}x{size}"
            a = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def batched(fn, x):
    return np.concatenate([fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def torch_runtime(model, meta):
    model.eval()

    def fn(x):
        with torch.no_grad():
            return model(normalise(torch.from_numpy(x), meta)).numpy()
    return fn


def torchvision_model(path, meta):
    import torchvision
    from safetensors.torch import load_file

    model = getattr(torchvision.models, meta["arch"])(weights=None)
    model.fc = nn.Identity()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model


def timm_model(path, meta):
    import timm
    from safetensors.torch import load_file

    if meta["arch"] in VIT_NAMES:
        model = timm.create_model(VIT_NAMES[meta["arch"]], pretrained=False, num_classes=0,
                                  img_size=meta["input_size"], patch_size=meta["vit_patch"],
                                  in_chans=meta["in_channels"])
    else:
        model = timm.create_model(meta["arch"], pretrained=False, num_classes=0)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model


def tract_runtime(tract, path, work):
    """Features by tract, through the `tract_features` example: one process per batch."""
    def features(x):
        images, out = work / "tract_images.npy", work / "tract_features.npy"
        np.save(images, np.ascontiguousarray(x, dtype=np.float32))
        subprocess.run([str(tract), str(path), str(images), str(out)], check=True,
                       capture_output=True, text=True)
        return np.load(out)
    return features


def onnx_runtime(path, meta, threads, report):
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    report["onnx"] = {
        "opset": [(o.domain, o.version) for o in graph.opset_import],
        "inputs": [(i.name, i.type, list(i.shape)) for i in inputs],
        "outputs": [(o.name, o.type, list(o.shape)) for o in outputs],
        "producer": f"{graph.producer_name} {graph.producer_version}".strip(),
        "metadata_props": {p.key: p.value for p in graph.metadata_props},
    }
    problems = []
    props = report["onnx"]["metadata_props"]
    for key in ("arch", "in_channels", "channel_order", "mean", "std", "input_size"):
        if key in props and key in meta:
            value = props[key]
            if key in ("in_channels", "mean", "std", "input_size"):
                value = json.loads(value)
            if value != meta[key]:
                problems.append(f"metadata {key} = {props[key]}, the pytorch export says {meta[key]}")
    if [i.name for i in inputs] != ["images"]:
        problems.append(f"inputs {[i.name for i in inputs]}, expected ['images']")
    if "features" not in [o.name for o in outputs]:
        problems.append(f"outputs {[o.name for o in outputs]}, expected 'features'")
    elif inputs and inputs[0].type != "tensor(float)":
        problems.append(f"input type {inputs[0].type}, expected tensor(float)")
    if inputs and isinstance(inputs[0].shape[0], int):
        problems.append(f"input batch dimension is fixed at {inputs[0].shape[0]}")
    report["onnx"]["problems"] = problems

    def fn(x):
        return sess.run(["features"], {"images": x})[0]
    return fn


def same_tensors(a, b):
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretext", required=True, type=Path)
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--tract", type=Path,
                   help="the tract_features example (cargo build --release --example tract_features)")
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-3,
                   help="allowed max abs difference, times max(1, max |feature|)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (args.work / "export").mkdir(parents=True, exist_ok=True)
    log, failures = [], []
    report = {"run": str(args.run), "images": str(args.images), "commands": log}

    # 1. exports
    files, exports = {}, {}
    for fmt in ("pytorch", "torchvision", "timm", "onnx"):
        out = args.work / "export" / f"{fmt}.{EXTENSION[fmt]}"
        out.unlink(missing_ok=True)
        ok, message = export(args, fmt, out, log)
        if fmt == "pytorch":
            if not ok:
                sys.exit(f"pretext export --to pytorch failed: {message}")
            meta = read_metadata(out)
            report["metadata"] = meta
        should = expected(fmt, meta)
        exports[fmt] = {"written": ok, "expected": should, "message": "" if ok else message}
        if ok:
            files[fmt] = out
        if ok != should:
            failures.append(f"export --to {fmt}: " + ("written, but should have been refused"
                                                      if ok else f"refused: {message}"))
    report["exports"] = exports
    for fmt in ("torchvision", "timm"):
        if fmt in files:
            got = read_metadata(files[fmt])
            same = same_tensors(files[fmt], files["pytorch"])
            differs = sorted(k for k in set(got) | set(meta)
                             if k != "format" and got.get(k) != meta.get(k))
            exports[fmt]["same_tensors_as_pytorch"] = same
            exports[fmt]["metadata_differs"] = differs
            if not same or differs:
                failures.append(f"{fmt} export: same tensors {same}, metadata differs in {differs}")

    # 2. pretext's own features
    embed_dir = args.work / "embed"
    e = run([args.pretext, "embed", "--quiet", "--run", args.run, "--data", args.images,
             "--out", embed_dir], log)
    if e.returncode != 0:
        sys.exit(f"pretext embed failed: {e.stderr.strip()}")
    split, chosen = rows_to_check(embed_dir, args.n)
    reference = np.load(embed_dir / f"{split}_features.npy")[[i for i, _ in chosen]]
    x = read_images([resolve(path, args.images) for _, path in chosen], meta)
    assert x.shape[1] == meta["in_channels"], f"images have {x.shape[1]} channels"
    scale = float(np.abs(reference).max())
    report.update(split=split, n=len(chosen), dim=int(reference.shape[1]), max_abs_feature=scale)

    # 3. the runtimes
    runtimes = [("pytorch", "pretext_models.load_export",
                 lambda: torch_runtime(load_export(files["pytorch"])[0], meta))]
    if "torchvision" in files:
        runtimes += [("torchvision", "torchvision.models." + meta["arch"],
                      lambda: torch_runtime(torchvision_model(files["torchvision"], meta), meta)),
                     ("torchvision", "pretext_models.load_export",
                      lambda: torch_runtime(load_export(files["torchvision"])[0], meta))]
    if "timm" in files:
        runtimes.append(("timm", "timm.create_model",
                         lambda: torch_runtime(timm_model(files["timm"], meta), meta)))
    if "onnx" in files:
        runtimes.append(("onnx", "onnxruntime " + __import__("onnxruntime").__version__,
                         lambda: onnx_runtime(files["onnx"], meta, args.threads, report)))
    if "onnx" in files and args.tract:
        runtimes.append(("onnx", "tract (examples/tract_features.rs)",
                         lambda: tract_runtime(args.tract, files["onnx"], args.work)))
    results = []
    for fmt, name, make in runtimes:
        row = {"export": fmt, "runtime": name}
        try:
            fn = make()
            t = time.time()
            got = batched(fn, x)
            row["seconds"] = round(time.time() - t, 2)
            assert got.shape == reference.shape, f"features {got.shape}, pretext {reference.shape}"
            row["max_abs_diff"] = float(np.abs(got - reference).max())
            if fmt == "onnx":  # another batch size than the one the graph was traced with
                odd = fn(x[:3])
                row["max_abs_diff_batch3"] = float(np.abs(odd - reference[:3]).max())
                row["max_abs_diff"] = max(row["max_abs_diff"], row["max_abs_diff_batch3"])
                failures += [f"onnx: {q}" for q in report["onnx"]["problems"]]
            row["ok"] = row["max_abs_diff"] <= args.tol * max(1.0, scale)
        except Exception as err:  # report every runtime, whatever one of them does
            row.update(ok=False, error=f"{type(err).__name__}: {err}")
        if not row["ok"]:
            failures.append(f"{fmt} / {name}: {row.get('error', row.get('max_abs_diff'))}")
        results.append(row)
    report["results"] = results
    report["failures"] = failures

    m = meta
    what = {"convnet4": f"convnet4 width {m.get('width')}"}.get(
        m["arch"], f"{m['arch']} width {m.get('width')} stem {m.get('stem')}")
    if m["arch"] in VIT_NAMES:
        what = f"{m['arch']} patch {m.get('vit_patch')}"
    print(f"\n{args.run}: {what}, {m['in_channels']} channels, {x.shape[-1]} pixels; "
          f"{len(chosen)} {split} images, {reference.shape[1]} dims, "
          f"max |feature| {scale:.4g}\n")
    print("| export | runtime | max abs difference vs pretext embed |")
    print("| --- | --- | --- |")
    for r in results:
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else r["error"]
        print(f"| {r['export']} | {r['runtime']} | {diff}{'' if r['ok'] else ' (FAIL)'} |")
    for fmt, e in exports.items():
        if not e["written"]:
            verdict = "refused (FAIL)" if e["expected"] else "refused, as it should be"
            print(f"| {fmt} | {verdict}: {e['message']} | - |")
    with open(args.work / "interop.json", "w") as f:
        json.dump(report, f, indent=1, default=str)
    if failures:
        print("\nFAILED:\n" + "\n".join(f"- {x}" for x in failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
