# The demo's recipe (`make demo`): a ~660K-parameter Llama trained on the CPU in minutes on the
# offline sample corpus, good enough to write a fluent story that keeps its hero's name.
# Paths and the vocabulary come from the Makefile's command line; this file holds the choices.
#   torchrun --standalone --nproc_per_node=2 train.py config/train_demo.py --vocab_size=2048 ...

device = 'cpu'
compile = False
dtype = 'float32'

# Small and shallow: the copy of the hero's name (an attention head that looks back to it) appears
# suddenly part-way through training, so the time is better spent on many cheap steps than on
# depth. A context of 160 still holds the longest sample story, so stories end at EOS.
dim = 128
n_layers = 2
n_heads = 4
n_kv_heads = 4
max_seq_len = 160

# 24 x 2 sequences per rank and 2 gloo ranks (one thread each: on a 2-core machine one rank with
# two threads is much slower per step)
batch_size = 24
gradient_accumulation_steps = 2
learning_rate = 4e-3
warmup_iters = 30
max_iters = 1000

eval_interval = 250
eval_iters = 8
log_interval = 20
always_save_checkpoint = True  # every eval writes ckpt.pt, so an interrupted demo resumes
