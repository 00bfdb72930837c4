"""Generate the timm part of the model catalogue (``shared/catalogue_timm.json``) from
timm's own registry, so that the API (which never imports timm) lists, describes and
checks every architecture this image can build.

``python -m crucible_trainer.gen_catalogue [--budget-s 900] [--output PATH]`` (``make
catalogue``). For each name in ``timm.list_models()`` (deprecated aliases excluded) it
records the timm module, the default pretrained configuration's input size (and whether
the architecture takes only that size), its pretrained tags, license and Hugging Face hub
id, and its parameter count: the architecture is built with ``pretrained=False`` on
PyTorch's meta device (shapes only, no memory, no download) and its parameters counted.
An architecture that cannot be built on the meta device is still listed, without a
count; so is every architecture left when ``--budget-s`` runs out (a 2-core machine
builds all of timm 1.0.31's in about four minutes). Nothing is downloaded: the Hugging
Face hub is switched off before timm is imported. The output is deterministic (sorted,
no timestamps), so a re-run with the same timm changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from shared.catalogue import TIMM_CATALOGUE_PATH


def _count(name: str) -> int:
    import timm
    import torch

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def _entry(name: str, module: str) -> dict[str, Any]:
    import timm
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    c = cfg.to_dict() if cfg is not None else {}
    chw = tuple(c.get("input_size") or (3, 224, 224))
    tags = sorted(t.split(".", 1)[1] for t in get_arch_pretrained_cfgs(name) if "." in t)
    tags = [t for t in tags if t]
    return {
        "module": module,
        "input_size": [int(chw[1]), int(chw[2]), int(chw[0])],  # height, width, channels
        "fixed_input_size": bool(c.get("fixed_input_size", False)),
        "default_tag": c.get("tag") or None,
        "tags": tags,
        "hf_hub_id": c.get("hf_hub_id") or None,
        "license": c.get("license") or None,
        "paper_ids": c.get("paper_ids") or None,
        "has_weights": bool(timm.is_model_pretrained(name)),
    }


def generate(budget_s: float, log: Any = print) -> dict[str, Any]:
    import timm
    import torch

    names = timm.list_models()
    module_of = {n: m for m in timm.list_modules() for n in timm.list_models(module=m)}
    start = time.monotonic()
    archs: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    skipped = 0
    for i, name in enumerate(names, 1):
        entry = _entry(name, module_of.get(name, ""))
        entry["parameter_count"] = None
        if time.monotonic() - start < budget_s:
            try:
                entry["parameter_count"] = _count(name)
            except Exception as exc:  # an architecture meta tensors cannot build
                failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
        else:
            skipped += 1
        archs[name] = entry
        if i % 100 == 0:
            log(f"{i}/{len(names)} architectures, {time.monotonic() - start:.0f} s")
    took = time.monotonic() - start
    counted = sum(1 for e in archs.values() if e["parameter_count"] is not None)
    log(
        f"{len(archs)} architectures in {took:.0f} s: {counted} with parameter counts, "
        f"{len(failed)} not buildable on the meta device, {skipped} past the {budget_s:g} s budget"
    )
    for line in failed:
        log(f"  no count: {line}")
    return {
        "generator": "crucible_trainer.gen_catalogue",
        "timm_version": timm.__version__,
        "torch_version": str(torch.__version__).split("+")[0],
        "architectures": dict(sorted(archs.items())),
    }


def write(data: dict[str, Any], path: Path) -> None:
    """One architecture a line: small diffs when timm changes."""
    head = {k: v for k, v in data.items() if k != "architectures"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "architectures": {']
    items = list(data["architectures"].items())
    for i, (name, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}{comma}")
    lines.append("}}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(tmp.read_text(encoding="utf-8"))  # what the API will read
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=TIMM_CATALOGUE_PATH)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=900.0,
        help="seconds to spend counting parameters; later architectures are listed without",
    )
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded
    logging.getLogger("timm").setLevel(logging.ERROR)
    data = generate(args.budget_s, log=lambda m: print(m, file=sys.stderr, flush=True))
    write(data, args.output)
    print(f"wrote {args.output} ({len(data['architectures'])} architectures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
