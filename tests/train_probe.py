"""Runs train.py unchanged, with instruments attached from outside through torch's public hooks
(the tests' only way into a training run; train.py has no test code):

    python3 tests/train_probe.py [--dump=DIR] [--slow_save=SECONDS] TRAIN_ARGS...
    torchrun ... tests/train_probe.py --dump=DIR TRAIN_ARGS...

--dump=DIR: every rank writes DIR/rank{R}_iter{I}.pt before each optimizer step (the weights the
  step starts from, the batches of its micro-steps, the clipped all-reduced gradients) and
  DIR/rank{R}_final.pt (the weights after the last step).
--slow_save=SECONDS: torch.save pauses after each chunk it writes, so a test can kill -9 the
  process in the middle of a checkpoint write.
"""

import os
import runpy
import sys
import time

import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SlowFile:
    def __init__(self, f, delay):
        self.f, self.delay = f, delay

    def write(self, b):
        n = self.f.write(b)
        self.f.flush()
        time.sleep(self.delay)
        return n

    def flush(self):
        self.f.flush()


def slow_down_torch_save(delay):
    save = torch.save

    def slow_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as fh:
                return save(obj, SlowFile(fh, delay), *args, **kwargs)
        return save(obj, SlowFile(f, delay), *args, **kwargs)

    torch.save = slow_save


def dump_every_step(out_dir):
    rank = int(os.environ.get("RANK", 0))
    state = {"iter": 0, "xs": [], "ys": []}

    def is_transformer(module):
        return type(module).__name__ == "Transformer" and type(module).__module__ == "model"

    def on_forward(module, args):
        if not is_transformer(module):
            return
        state["model"] = module
        # training micro-steps only: evaluation runs under no_grad in eval mode
        if module.training and torch.is_grad_enabled() and len(args) == 2:
            state["xs"].append(args[0].detach().cpu().clone())
            state["ys"].append(args[1].detach().cpu().clone())

    def weights():
        return {k: v.detach().cpu().clone() for k, v in state["model"].state_dict().items()}

    def before_step(opt, args, kwargs):
        grads = {k: p.grad.detach().cpu().clone() for k, p in state["model"].named_parameters()}
        torch.save({"iter": state["iter"], "xs": state["xs"], "ys": state["ys"], "params": weights(),
                    "grads": grads}, os.path.join(out_dir, f"rank{rank}_iter{state['iter']}.pt"))
        state["xs"], state["ys"] = [], []

    def after_step(opt, args, kwargs):
        torch.save(weights(), os.path.join(out_dir, f"rank{rank}_final.pt"))
        state["iter"] += 1

    register_module_forward_pre_hook(on_forward)
    register_optimizer_step_pre_hook(before_step)
    register_optimizer_step_post_hook(after_step)


def main():
    args = sys.argv[1:]
    while args and args[0].startswith(("--dump=", "--slow_save=")):
        key, value = args.pop(0)[2:].split("=", 1)
        if key == "dump":
            dump_every_step(value)
        else:
            slow_down_torch_save(float(value))
    sys.path.insert(0, ROOT)
    sys.argv = [os.path.join(ROOT, "train.py"), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
