"""Training it/s of FP32 vs bf16 autocast, channels_last and the train-time fold, side by side.

    .venv/bin/python benchmarks/train_speed.py [--config paper] [--steps 20] [--set speed.threads=2] [--json F]
    (--set speed.compile=true adds torch.compile variants on the CPU)

Same as `treefuse train --benchmark`. Prints the device and CPU BF16 support with the table;
compare ratios from one run (these machines are shared and noisy).
"""
import argparse

from treefuse.train.benchmark import run_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", help="also write the figures (with device and versions) here")
    args = parser.parse_args()
    run_benchmark(args.config, args.overrides, steps=args.steps, rounds=args.rounds, json_path=args.json)
