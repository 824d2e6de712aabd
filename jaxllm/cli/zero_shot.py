"""Classify images with a trained CLIP run by text prompts (zero-shot).

  jaxllm zero-shot --run DIR --labels "zero,one,two,three,four,five,six,seven,eight,nine" \
      --template "a photo of the digit {}"
  jaxllm zero-shot --run DIR --labels "0,1,2,3,4,5,6,7,8,9" --template "a handwritten {}" \
      --grid grid.png --similarity sim.png
  jaxllm zero-shot --run DIR --labels "..." --template "..." --images my_digits.npy

Each label fills the template's {} slot; every image goes to the label whose prompt is most
similar. On the run's test split (the default) the i-th label stands for digit i, so with ten
labels the accuracy is printed. --images takes an .npy array of uint8 images (N, H, W, C) or
(N, H, W) of the run's size. --grid draws the first --show images with their predictions;
--similarity the image-prompt similarity matrix of the first 10 images.
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--run", required=True, help="a CLIP run directory (from jaxllm train)")
    p.add_argument("--labels", required=True, help="comma-separated class names")
    p.add_argument("--template", default="{}", help='prompt with a {} slot (default "{}")')
    p.add_argument("--images", help=".npy file of uint8 images (default: the run's test split)")
    p.add_argument("--limit", type=int, help="classify only the first N images")
    p.add_argument("--grid", help="write a PNG grid of images with their predicted labels")
    p.add_argument("--similarity", help="write a PNG of the image-prompt similarity matrix")
    p.add_argument("--show", type=int, default=32, help="images in the --grid (default 32)")
    p.add_argument("--step", type=int, help="checkpoint step to load (default: the latest)")


def run(args) -> int:
    import numpy as np

    from jaxllm.data.captions import class_prompts
    from jaxllm.errors import DataError

    labels = [s.strip() for s in args.labels.split(",")] if args.labels.strip() else []
    prompts = class_prompts(labels, args.template)  # checks labels and template first
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit={args.limit}: must be at least 1")
    from jaxllm.files import check_new_file
    for flag, path in (("--grid", args.grid), ("--similarity", args.similarity)):
        if path:
            check_new_file(path, flag)  # before the model is loaded
    from jaxllm.data.images import load_images
    from jaxllm.infer import vision
    from jaxllm.models.vit import check_images
    from jaxllm.train import load_run

    loaded = load_run(args.run, step=args.step)
    cfg = loaded.config
    if cfg.model.kind != "clip":
        raise DataError(f"{args.run} is a {cfg.model.kind} run; zero-shot needs a CLIP run "
                        f"(jaxllm train --preset mnist-clip)")
    truth = None
    if args.images:
        images = _read_images(args.images)
        check_images(cfg.model, images.shape)
    else:
        test = load_images(cfg.data.corpus).test
        images, truth = test.images, test.labels
    if args.limit:
        images = images[:args.limit]
        truth = None if truth is None else truth[:args.limit]
    sim, pred = vision.zero_shot(loaded.model, loaded.params, loaded.tokenizer,
                                 cfg.model.max_len, images, prompts)  # (N, K), (N,)
    counts = np.bincount(pred, minlength=len(labels))
    print(f"{len(images):,} images; predicted: " + ", ".join(
        f"{lab} {c}" for lab, c in zip(labels, counts)))
    names = None
    if truth is not None and len(labels) == 10:
        print(f"zero-shot accuracy with {args.template!r}: {np.mean(pred == truth):.4f} "
              f"(label i = digit i)")
        names = [labels[t] for t in truth]
    if args.grid:
        n = min(args.show, len(images))
        vision.plot_predictions(images[:n], [labels[i] for i in pred[:n]],
                                None if names is None else names[:n], args.grid,
                                title=f"zero-shot: {args.template!r}")
        print(f"wrote {args.grid}")
    if args.similarity:
        n = min(10, len(images))
        vision.plot_similarity(sim[:n], images[:n], prompts, args.similarity)
        print(f"wrote {args.similarity}")
    return 0


def _read_images(path: str):
    import numpy as np

    from jaxllm.errors import DataError

    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"--images {path}: cannot read it as an .npy array ({e})") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
        raise DataError(f"--images {path}: expected uint8 images (N, H, W[, C]), got "
                        f"{images.dtype} {images.shape}")
    return images
