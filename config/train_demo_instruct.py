# The instruct demo's recipe (`make demo-instruct`): the committed demo model fine-tuned (SFT) on
# instructions derived from the offline sample corpus (instruct.py), loss on the story only.
# The model's shape comes from --init_from; paths and the vocabulary come from the Makefile.
#   torchrun --standalone --nproc_per_node=2 train.py config/train_demo_instruct.py --init_from=demo/stories_demo.bin ...

task = 'sft'
device = 'cpu'
compile = False
dtype = 'float32'

# the longest instruction + story of the sample corpus is about 210 tokens: RoPE is computed, so the
# context may grow past the 160 the model was pretrained with
max_seq_len = 224

# many cheap steps, as in pretraining: 16 pairs per rank and step, 2 gloo ranks; following the
# instruction's words is learned late, so the steps fill the demo's few minutes (bench/README.md)
batch_size = 16
gradient_accumulation_steps = 2
learning_rate = 3e-3
warmup_iters = 20
max_iters = 800

eval_interval = 400
eval_iters = 2
log_interval = 20
always_save_checkpoint = True  # every eval writes ckpt.pt, so an interrupted demo resumes
